"""Handler options through a real worker: retry_on / no_retry_on, process isolation,
and what a handler reports through its context (progress, a result of its own)."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import pytest

from jobsched.core.models import AttemptStatus, JsonObject, RetryPolicy, RunStatus
from jobsched.storage.database import SQLStorage
from jobsched.worker.context import RESULT_BYTES_MAX, RunContext
from jobsched.worker.registry import HandlerRegistry
from tests.helpers import create_due_run, wait_until
from tests.integration.worker import process_handlers
from tests.integration.worker.conftest import StartWorker, final_run, job_spec, process_gone


class QuotaExceededError(Exception):
    pass


class UpstreamDownError(ConnectionError):
    pass


# --- retry_on / no_retry_on ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raised", "options", "expected_attempts"),
    [
        (QuotaExceededError, {"no_retry_on": (QuotaExceededError,)}, 1),
        (UpstreamDownError, {"no_retry_on": (QuotaExceededError,)}, 3),
        (UpstreamDownError, {"retry_on": (ConnectionError,)}, 3),
        (KeyError, {"retry_on": (ConnectionError,)}, 1),
        # no_retry_on wins over retry_on
        (
            UpstreamDownError,
            {"retry_on": (ConnectionError,), "no_retry_on": (UpstreamDownError,)},
            1,
        ),
    ],
)
async def test_retry_options_decide_which_failures_are_retried(
    storage: SQLStorage,
    start_worker: StartWorker,
    raised: type[Exception],
    options: dict[str, Any],
    expected_attempts: int,
) -> None:
    registry = HandlerRegistry()

    @registry.handler("picky", **options)
    async def picky(payload: JsonObject, context: RunContext) -> None:
        raise raised(f"attempt {context.attempt}")

    run = await create_due_run(storage, job_spec("picky"))
    await start_worker(registry)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert (done.status, done.attempt) == (RunStatus.DEAD, expected_attempts)
    attempts = await storage.list_attempts(run.id)
    assert [a.status for a in attempts] == [AttemptStatus.FAILED] * expected_attempts


# --- process isolation -------------------------------------------------------------------


async def test_process_handler_runs_in_a_child_and_its_result_is_recorded(
    storage: SQLStorage, start_worker: StartWorker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jobsched.handler")
    registry = HandlerRegistry()
    registry.register("squares", process_handlers.sum_of_squares, isolation="process")
    run = await create_due_run(storage, job_spec("squares", payload={"up_to": 1000}))
    await start_worker(registry)

    done = await wait_until(lambda: final_run(storage, run.id), timeout_seconds=20)
    assert done.status is RunStatus.SUCCEEDED
    assert done.result is not None
    assert done.result["total"] == sum(n * n for n in range(1000))
    assert done.result["pid"] != os.getpid()
    # The child's log record reached the worker's logging, bound to the run.
    (record,) = [r for r in caplog.records if "summed squares up to 1000" in r.getMessage()]
    assert record.name == "jobsched.handler"
    assert getattr(record, "run_id", None) == str(run.id)
    assert str(done.result["pid"]) in record.getMessage()


async def test_process_handler_failure_follows_its_retry_options(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    registry.register(
        "planned",
        process_handlers.fail_as_planned,
        isolation="process",
        no_retry_on=(process_handlers.PlannedFailureError,),
    )
    run = await create_due_run(storage, job_spec("planned"))
    await start_worker(registry)

    done = await wait_until(lambda: final_run(storage, run.id), timeout_seconds=20)
    assert (done.status, done.attempt) == (RunStatus.DEAD, 1)
    assert done.last_error == "PlannedFailureError: planned failure on attempt 1"
    (attempt,) = await storage.list_attempts(run.id)
    assert attempt.result == {"got_to": "the end"}  # set through the context, in the child


async def test_process_that_dies_fails_its_attempt_and_is_retried(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    registry.register("dies", process_handlers.exit_abruptly, isolation="process")
    run = await create_due_run(storage, job_spec("dies", payload={"exit_code": 3}))
    await start_worker(registry)

    done = await wait_until(lambda: final_run(storage, run.id), timeout_seconds=20)
    assert (done.status, done.attempt) == (RunStatus.DEAD, 3)
    assert done.last_error is not None
    assert done.last_error.startswith(
        "the handler's process exited with code 3 before reporting an outcome"
    )


async def test_process_handler_past_its_timeout_is_killed(
    storage: SQLStorage, start_worker: StartWorker, tmp_path: Any
) -> None:
    registry = HandlerRegistry()
    registry.register("overrun", process_handlers.write_pid_then_sleep, isolation="process")
    pid_file = tmp_path / "overrun.pid"
    run = await create_due_run(
        storage,
        job_spec(
            "overrun",
            payload={"pid_file": str(pid_file), "sleep_seconds": 60},
            timeout_seconds=1.0,
            retry=RetryPolicy(max_attempts=1),
        ),
    )
    await start_worker(registry)

    done = await wait_until(lambda: final_run(storage, run.id), timeout_seconds=20)
    assert (done.status, done.last_error) == (RunStatus.DEAD, "timed out after 1s")
    pid = int(pid_file.read_text())
    assert process_gone(pid)
    (attempt,) = await storage.list_attempts(run.id)
    # Its progress report came from the child before it was killed.
    assert attempt.status is AttemptStatus.TIMED_OUT
    assert attempt.result == {"progress": {"pid": pid}}


# --- progress and results through the context ----------------------------------------


async def test_progress_of_a_timed_out_attempt_is_its_result(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()

    @registry.handler("batches")
    async def batches(payload: JsonObject, context: RunContext) -> None:
        for batch in range(1, 1000):
            await context.report_progress({"batches_done": batch})
            await asyncio.sleep(0.1 if batch < 3 else 60)

    run = await create_due_run(
        storage, job_spec("batches", timeout_seconds=0.5, retry=RetryPolicy(max_attempts=1))
    )
    await start_worker(registry)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert done.status is RunStatus.DEAD
    (attempt,) = await storage.list_attempts(run.id)
    assert (attempt.status, attempt.result) == (
        AttemptStatus.TIMED_OUT,
        {"progress": {"batches_done": 3}},
    )


async def test_result_set_from_a_thread_is_recorded(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()

    @registry.handler("sets_result")
    def sets_result(payload: JsonObject, context: RunContext) -> None:
        context.report_progress({"step": 1})  # no await needed in a thread
        context.set_result({"rows": 42})

    run = await create_due_run(storage, job_spec("sets_result"))
    await start_worker(registry)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert (done.status, done.result) == (RunStatus.SUCCEEDED, {"rows": 42})


async def test_oversized_result_fails_the_run_for_good(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()

    @registry.handler("too_much")
    async def too_much(payload: JsonObject, context: RunContext) -> None:
        context.set_result({"blob": "x" * RESULT_BYTES_MAX})

    run = await create_due_run(storage, job_spec("too_much"))
    await start_worker(registry)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert (done.status, done.attempt) == (RunStatus.DEAD, 1)
    assert done.last_error is not None
    assert done.last_error.startswith("UnstorableResultError: result: is ")
    assert f"at most {RESULT_BYTES_MAX} are kept" in done.last_error
