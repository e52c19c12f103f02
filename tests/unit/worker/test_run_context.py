"""What a handler reports through its context: progress, a result, bounded and thread-safe."""

from __future__ import annotations

import math
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest

from jobsched.core.models import JsonObject
from jobsched.worker.context import (
    RESULT_BYTES_MAX,
    AttemptState,
    Flag,
    RunContext,
    storable_json_object,
)
from jobsched.worker.errors import NonRetryableError, UnstorableResultError


def make_context(state: AttemptState | None = None) -> RunContext:
    return RunContext(
        run_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
        attempt=1,
        scheduled_for=datetime(2026, 11, 27, 3, tzinfo=UTC),
        type="job",
        queue="default",
        timeout_seconds=None,
        state=state or AttemptState(),
    )


def test_nothing_reported_means_no_result() -> None:
    assert AttemptState().recorded_result(None) is None


def test_returned_result_wins_over_what_was_set() -> None:
    state = AttemptState()
    state.set_result({"set": 1})
    state.set_progress({"step": 2})
    assert state.recorded_result({"returned": 3}) == {"returned": 3}
    assert state.recorded_result(None) == {"set": 1}


def test_last_progress_is_the_result_when_nothing_else_is() -> None:
    state = AttemptState()
    state.set_progress({"step": 1})
    state.set_progress({"step": 2})
    assert state.progress == {"step": 2}
    assert state.recorded_result(None) == {"progress": {"step": 2}}


async def test_report_progress_can_be_awaited_or_just_called() -> None:
    context = make_context()
    await context.report_progress({"awaited": True})
    assert context.state.progress == {"awaited": True}
    context.report_progress({"called": True})  # what a sync handler in a thread does
    assert context.state.progress == {"called": True}


def test_reports_from_many_threads_keep_one_whole_value() -> None:
    context = make_context()

    def report(thread_number: int) -> None:
        for step in range(200):
            context.report_progress({"thread": thread_number, "step": step})

    threads = [threading.Thread(target=report, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    progress = context.state.progress
    assert progress is not None
    assert progress["step"] == 199
    assert progress["thread"] in range(4)


def test_reports_are_forwarded_as_made() -> None:
    forwarded: list[tuple[str, JsonObject]] = []
    context = make_context(
        AttemptState(forward=lambda kind, value: forwarded.append((kind, value)))
    )
    context.report_progress({"step": (1, 2)})
    context.set_result({"done": True})
    assert forwarded == [("progress", {"step": [1, 2]}), ("result", {"done": True})]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1, 2], "must be a JSON object, not list"),
        ({"ratio": math.inf}, "is not JSON"),
        ({"when": datetime(2026, 1, 1, tzinfo=UTC)}, "is not JSON"),
        ({"text": "a\x00b"}, "holds a NUL character"),
        ({"nested": [("a\x00",)]}, "holds a NUL character"),
        ({"blob": "x" * RESULT_BYTES_MAX}, f"at most {RESULT_BYTES_MAX} are kept"),
        ({"blob": "é" * (RESULT_BYTES_MAX // 2)}, "bytes as JSON"),  # counted in UTF-8 bytes
    ],
)
def test_values_that_cannot_be_recorded_are_refused(value: object, message: str) -> None:
    context = make_context()
    with pytest.raises(UnstorableResultError, match=message) as raised:
        context.set_result(value)  # type: ignore[arg-type]
    assert isinstance(raised.value, NonRetryableError)  # a handler letting it out ends dead
    with pytest.raises(UnstorableResultError):
        context.report_progress(value)  # type: ignore[arg-type]
    assert context.state.recorded_result(None) is None


def test_a_value_just_under_the_bound_is_kept() -> None:
    overhead = len('{"blob": ""}')
    value = {"blob": "x" * (RESULT_BYTES_MAX - overhead)}
    assert storable_json_object(value, "result") == value


def test_handler_ended_starts_unset() -> None:
    assert not make_context().state.handler_ended.is_set()


def test_a_flag_is_set_once_set() -> None:
    flag = Flag()
    assert not flag.is_set()
    assert flag.wait(timeout=0.01) is False
    flag.set()
    assert flag.is_set()
    assert flag.wait(timeout=0) is True


def test_a_flag_wakes_a_thread_waiting_on_it() -> None:
    flag = Flag()
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(flag.wait(timeout=10)))
    waiter.start()
    time.sleep(0.05)  # the waiter is (most likely) blocked by now
    flag.set()
    waiter.join(timeout=10)
    assert woke == [True]


def test_a_flag_set_while_a_waiter_makes_its_event_still_wakes_it() -> None:
    # Race set() against the first wait(), many times: a set() that lands between the
    # waiter's first look and its event's creation must not leave it blocked.
    for _ in range(300):
        flag = Flag()
        woke: list[bool] = []
        waiter = threading.Thread(target=lambda flag=flag, woke=woke: woke.append(flag.wait(5)))
        waiter.start()
        flag.set()
        waiter.join(timeout=10)
        assert woke == [True]


def test_the_context_logger_is_made_once_and_names_the_attempt() -> None:
    context = make_context()
    assert context.logger is context.logger
    assert context.logger.extra == {
        "run_id": str(context.run_id),
        "attempt": 1,
        "job_type": "job",
        "job_id": str(context.job_id),
    }
