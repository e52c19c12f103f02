"""One handler call reduced to an ending: results, errors, timeouts, cancellation (no storage)."""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from jobsched.core.models import AttemptStatus, JsonObject
from jobsched.worker.context import RunContext
from jobsched.worker.errors import NonRetryableError
from jobsched.worker.execution import (
    ERROR_LENGTH_MAX,
    HandlerEnding,
    bound_error_text,
    run_handler,
)
from jobsched.worker.registry import Handler, HandlerRegistry

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


def make_context(type_name: str = "job", timeout_seconds: float | None = None) -> RunContext:
    return RunContext(
        run_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
        attempt=1,
        scheduled_for=datetime(2026, 11, 27, 3, tzinfo=UTC),
        type=type_name,
        queue="default",
        timeout_seconds=timeout_seconds,
    )


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=2)
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


async def call(
    handler: Handler,
    executor: ThreadPoolExecutor,
    *,
    payload: JsonObject | None = None,
    context: RunContext | None = None,
) -> HandlerEnding:
    registry = HandlerRegistry(builtins=False)
    registry.register("job", handler)
    return await run_handler(registry, payload or {}, context or make_context(), executor)


async def test_result_is_kept_as_json(executor: ThreadPoolExecutor) -> None:
    async def handler(payload: JsonObject, context: RunContext) -> Any:
        return {"items": (1, 2), "echo": payload}

    ending = await call(handler, executor, payload={"a": 1})
    assert ending == HandlerEnding(
        AttemptStatus.SUCCEEDED, result={"items": [1, 2], "echo": {"a": 1}}
    )


async def test_none_is_success_without_result(executor: ThreadPoolExecutor) -> None:
    def handler(payload: JsonObject, context: RunContext) -> None:
        return None

    assert await call(handler, executor) == HandlerEnding(AttemptStatus.SUCCEEDED)


@pytest.mark.parametrize(
    ("result", "error_start"),
    [
        ([1, 2], "handler returned list, not a JSON object or None"),
        ("done", "handler returned str"),
        ({"ratio": math.nan}, "handler result is not JSON"),
        ({"when": datetime(2026, 1, 1, tzinfo=UTC)}, "handler result is not JSON"),
        ({"text": "a\x00b"}, "handler result holds a NUL character"),
        ({"nested": [{"a\x00": 1}]}, "handler result holds a NUL character"),
    ],
)
async def test_result_that_cannot_be_stored_fails_for_good(
    executor: ThreadPoolExecutor, result: object, error_start: str
) -> None:
    async def handler(payload: JsonObject, context: RunContext) -> Any:
        return result

    ending = await call(handler, executor)
    assert (ending.attempt_status, ending.retryable) == (AttemptStatus.FAILED, False)
    assert ending.error is not None
    assert ending.error.startswith(error_start)


async def test_exception_is_a_retryable_failure(executor: ThreadPoolExecutor) -> None:
    def handler(payload: JsonObject, context: RunContext) -> None:
        raise ValueError("bad thing")

    ending = await call(handler, executor)
    assert ending == HandlerEnding(AttemptStatus.FAILED, error="ValueError: bad thing")


async def test_exception_without_message_is_named(executor: ThreadPoolExecutor) -> None:
    async def handler(payload: JsonObject, context: RunContext) -> None:
        raise KeyError

    assert (await call(handler, executor)).error == "KeyError"


async def test_non_retryable_error_is_final(executor: ThreadPoolExecutor) -> None:
    async def handler(payload: JsonObject, context: RunContext) -> None:
        raise NonRetryableError("no point trying again")

    ending = await call(handler, executor)
    assert ending.retryable is False
    assert ending.error == "NonRetryableError: no point trying again"


async def test_unknown_type_is_final(executor: ThreadPoolExecutor) -> None:
    registry = HandlerRegistry(builtins=False)
    ending = await run_handler(registry, {}, make_context("nothing"), executor)
    assert ending == HandlerEnding(
        AttemptStatus.FAILED, error="no handler registered for type 'nothing'", retryable=False
    )


async def test_long_errors_are_bounded(executor: ThreadPoolExecutor) -> None:
    async def handler(payload: JsonObject, context: RunContext) -> None:
        raise RuntimeError("x" * 10_000)

    error = (await call(handler, executor)).error
    assert error is not None
    assert len(error) == ERROR_LENGTH_MAX
    assert error.startswith("RuntimeError: xxx")
    assert error.endswith("(truncated)")


def test_error_text_cannot_hold_nul() -> None:
    assert bound_error_text("a\x00b") == "a\\x00b"


async def test_async_handler_past_its_timeout_is_cancelled(executor: ThreadPoolExecutor) -> None:
    unwound: list[bool] = []

    async def handler(payload: JsonObject, context: RunContext) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            unwound.append(context.is_cancelled())

    context = make_context(timeout_seconds=0.1)
    ending = await call(handler, executor, context=context)
    assert ending == HandlerEnding(AttemptStatus.TIMED_OUT, error="timed out after 0.1s")
    assert context.is_cancelled()
    assert unwound == [True]  # the flag was set before the handler was cancelled


async def test_thread_handler_past_its_timeout_ends_at_the_deadline(
    executor: ThreadPoolExecutor,
) -> None:
    release = threading.Event()

    def handler(payload: JsonObject, context: RunContext) -> None:
        release.wait(timeout=20)

    context = make_context(timeout_seconds=0.2)
    started = time.monotonic()
    try:
        ending = await call(handler, executor, context=context)
        assert time.monotonic() - started < 2
        assert not release.is_set()
        assert ending.attempt_status is AttemptStatus.TIMED_OUT
        assert context.is_cancelled()
    finally:
        release.set()


async def test_handlers_own_timeout_error_is_a_failure(executor: ThreadPoolExecutor) -> None:
    async def handler(payload: JsonObject, context: RunContext) -> None:
        raise TimeoutError("upstream took too long")

    ending = await call(handler, executor, context=make_context(timeout_seconds=30))
    assert ending == HandlerEnding(
        AttemptStatus.FAILED, error="TimeoutError: upstream took too long"
    )


async def test_cancellation_inside_the_handler_is_a_failure(executor: ThreadPoolExecutor) -> None:
    async def handler(payload: JsonObject, context: RunContext) -> None:
        raise asyncio.CancelledError

    ending = await call(handler, executor)
    assert ending.attempt_status is AttemptStatus.FAILED
    assert ending.error is not None
    assert "CancelledError" in ending.error


async def test_cancelling_the_attempt_cancels_the_handler(executor: ThreadPoolExecutor) -> None:
    entered = asyncio.Event()
    unwound: list[bool] = []

    async def handler(payload: JsonObject, context: RunContext) -> None:
        entered.set()
        try:
            await asyncio.sleep(60)
        finally:
            unwound.append(context.is_cancelled())

    context = make_context()
    attempt = asyncio.create_task(call(handler, executor, context=context))
    await entered.wait()
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    assert unwound == [True]


async def test_thread_handler_sees_the_callers_context_variables(
    executor: ThreadPoolExecutor,
) -> None:
    request_id.set("abc-123")

    def handler(payload: JsonObject, context: RunContext) -> JsonObject:
        return {"thread": threading.current_thread().name, "request_id": request_id.get()}

    ending = await call(handler, executor)
    assert ending.result is not None
    assert ending.result["thread"] != threading.main_thread().name
    assert ending.result["request_id"] == "abc-123"


async def test_plain_function_returning_a_coroutine_is_awaited(
    executor: ThreadPoolExecutor,
) -> None:
    async def inner() -> JsonObject:
        return {"awaited": True}

    def handler(payload: JsonObject, context: RunContext) -> Any:
        return inner()

    assert (await call(handler, executor)).result == {"awaited": True}


# --- retry options, reported results, the handler's end ----------------------------------


class QuotaError(Exception):
    pass


async def test_no_retry_on_makes_a_failure_final(executor: ThreadPoolExecutor) -> None:
    registry = HandlerRegistry(builtins=False)

    @registry.handler("job", no_retry_on=(QuotaError,))
    async def handler(payload: JsonObject, context: RunContext) -> None:
        raise QuotaError("over quota")

    ending = await run_handler(registry, {}, make_context(), executor)
    assert ending == HandlerEnding(
        AttemptStatus.FAILED, error="QuotaError: over quota", retryable=False
    )


async def test_retry_on_leaves_other_failures_final(executor: ThreadPoolExecutor) -> None:
    registry = HandlerRegistry(builtins=False)

    @registry.handler("job", retry_on=(ConnectionError,))
    def handler(payload: JsonObject, context: RunContext) -> None:
        raise KeyError("missing")

    ending = await run_handler(registry, {}, make_context(), executor)
    assert ending.retryable is False


async def test_timeouts_are_retried_whatever_retry_on_says(executor: ThreadPoolExecutor) -> None:
    registry = HandlerRegistry(builtins=False)

    @registry.handler("job", retry_on=(ConnectionError,))
    async def handler(payload: JsonObject, context: RunContext) -> None:
        await asyncio.sleep(60)

    ending = await run_handler(registry, {}, make_context(timeout_seconds=0.05), executor)
    assert (ending.attempt_status, ending.retryable) == (AttemptStatus.TIMED_OUT, True)


async def test_set_result_is_the_result_of_a_failed_attempt(executor: ThreadPoolExecutor) -> None:
    def handler(payload: JsonObject, context: RunContext) -> None:
        context.set_result({"rows_written": 7})
        raise RuntimeError("disk full")

    ending = await call(handler, executor)
    assert (ending.error, ending.result) == ("RuntimeError: disk full", {"rows_written": 7})


async def test_progress_is_the_result_of_a_timed_out_attempt(
    executor: ThreadPoolExecutor,
) -> None:
    async def handler(payload: JsonObject, context: RunContext) -> None:
        await context.report_progress({"pages": 3})
        await asyncio.sleep(60)

    ending = await call(handler, executor, context=make_context(timeout_seconds=0.05))
    assert (ending.attempt_status, ending.result) == (
        AttemptStatus.TIMED_OUT,
        {"progress": {"pages": 3}},
    )


async def test_returned_result_wins(executor: ThreadPoolExecutor) -> None:
    async def handler(payload: JsonObject, context: RunContext) -> JsonObject:
        context.set_result({"set": True})
        return {"returned": True}

    assert (await call(handler, executor)).result == {"returned": True}


async def test_handler_end_is_noted_once_its_code_stops(executor: ThreadPoolExecutor) -> None:
    release = threading.Event()

    def handler(payload: JsonObject, context: RunContext) -> None:
        release.wait(timeout=20)

    context = make_context(timeout_seconds=0.05)
    try:
        await call(handler, executor, context=context)
        # The attempt is over, but its thread still runs.
        assert not context.state.handler_ended.is_set()
    finally:
        release.set()
    assert context.state.handler_ended.wait(timeout=5)


async def test_an_async_handlers_end_is_noted_when_cancelled(
    executor: ThreadPoolExecutor,
) -> None:
    async def handler(payload: JsonObject, context: RunContext) -> None:
        await asyncio.sleep(60)

    context = make_context(timeout_seconds=0.05)
    await call(handler, executor, context=context)
    assert context.state.handler_ended.is_set()


async def test_shell_without_a_handler_says_it_is_disabled(executor: ThreadPoolExecutor) -> None:
    registry = HandlerRegistry()
    ending = await run_handler(registry, {"command": ["true"]}, make_context("shell"), executor)
    assert ending.retryable is False
    assert ending.error is not None
    assert ending.error.startswith("the shell handler is disabled on this worker")


async def test_sync_handlers_get_a_thread_of_their_own_without_an_executor() -> None:
    registry = HandlerRegistry(builtins=False)

    @registry.handler("job")
    def handler(payload: JsonObject, context: RunContext) -> JsonObject:
        return {"thread": threading.current_thread().name}

    ending = await run_handler(registry, {}, make_context(), None)
    assert ending.result is not None
    assert ending.result["thread"].startswith("jobsched-handler-")
