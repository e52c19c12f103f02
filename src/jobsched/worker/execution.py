"""One call of a handler, under its timeout, reduced to a ``HandlerEnding``.

Nothing here touches storage or the queue: the service turns the ending into an
attempt outcome (with the retry decision) and records it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
from concurrent.futures import Executor
from dataclasses import dataclass

from jobsched.core.models import AttemptStatus, JsonObject
from jobsched.worker.context import RunContext
from jobsched.worker.errors import NonRetryableError
from jobsched.worker.registry import Handler, HandlerRegistry, is_async_handler

ERROR_LENGTH_MAX = 2000
# How long a cancelled async handler may take to unwind (finally blocks, cleanup).
CANCEL_GRACE_SECONDS = 1.0
_TRUNCATED = " … (truncated)"


@dataclass(frozen=True, slots=True)
class HandlerEnding:
    """How an attempt's handler call ended: ``succeeded``, ``failed`` or ``timed_out``.

    ``retryable`` False means another try would fail the same way (the run ends dead).
    """

    attempt_status: AttemptStatus
    error: str | None = None
    result: JsonObject | None = None
    retryable: bool = True


async def run_handler(
    registry: HandlerRegistry,
    payload: JsonObject,
    context: RunContext,
    executor: Executor | None,
) -> HandlerEnding:
    """Call the handler of ``context.type`` with ``payload``, within ``context.timeout_seconds``.

    Never raises for the handler's faults (an unknown type, an exception, a timeout, a
    result that cannot be stored); raises ``CancelledError`` only when the calling task
    is cancelled. Whenever the attempt is given up (timeout or cancellation),
    ``context.cancelled`` is set first, then an async handler is cancelled and given
    ``CANCEL_GRACE_SECONDS`` to unwind; a thread handler is left to notice the flag
    (a thread cannot be killed) while the attempt ends at once.
    """
    handler = registry.get(context.type)
    if handler is None:
        return failure(f"no handler registered for type {context.type!r}", retryable=False)
    call = asyncio.ensure_future(_invoke(handler, payload, context, executor))
    try:
        done, _ = await asyncio.wait({call}, timeout=context.timeout_seconds)
    except asyncio.CancelledError:
        await _give_up(call, context)
        raise
    if not done:
        await _give_up(call, context)
        return HandlerEnding(
            AttemptStatus.TIMED_OUT, error=f"timed out after {context.timeout_seconds:g}s"
        )
    if call.cancelled():  # a cancellation inside the handler, not of this attempt
        return failure("CancelledError: the handler was cancelled")
    error = call.exception()
    if error is not None:
        return failure_from(error)
    return success(call.result())


async def _give_up(call: asyncio.Future[object], context: RunContext) -> None:
    context.cancelled.set()
    call.cancel()
    # Whatever the handler raises from here on is of no interest; retrieve it so that
    # asyncio does not log "exception was never retrieved".
    call.add_done_callback(lambda ended: ended.cancelled() or ended.exception())
    await asyncio.wait({call}, timeout=CANCEL_GRACE_SECONDS)


async def _invoke(
    handler: Handler, payload: JsonObject, context: RunContext, executor: Executor | None
) -> object:
    if is_async_handler(handler):
        returned = handler(payload, context)
    else:
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, handler, payload, context)
        returned = await loop.run_in_executor(executor, call)
    if inspect.isawaitable(returned):  # a plain function that returned a coroutine
        return await returned
    return returned


def success(result: object) -> HandlerEnding:
    """A handler's return value as an ending; one that cannot be stored fails, for good."""
    if result is None:
        return HandlerEnding(AttemptStatus.SUCCEEDED)
    if not isinstance(result, dict):
        return failure(
            f"handler returned {type(result).__name__}, not a JSON object or None",
            retryable=False,
        )
    try:
        normalised = json.loads(json.dumps(result, allow_nan=False))
    except (TypeError, ValueError) as error:
        return failure(f"handler result is not JSON: {error}", retryable=False)
    if _holds_nul(normalised):
        return failure("handler result holds a NUL character, which cannot be stored", False)
    return HandlerEnding(AttemptStatus.SUCCEEDED, result=normalised)


def _holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def failure_from(error: BaseException) -> HandlerEnding:
    """A failed ending from an exception: ``NonRetryableError`` and subclasses are final."""
    detail = str(error)
    text = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
    return failure(text, retryable=not isinstance(error, NonRetryableError))


def failure(text: str, retryable: bool = True) -> HandlerEnding:
    return HandlerEnding(AttemptStatus.FAILED, error=bound_error_text(text), retryable=retryable)


def bound_error_text(text: str) -> str:
    """``text`` cut to ``ERROR_LENGTH_MAX`` characters, storable in PostgreSQL (no NUL)."""
    text = text.replace("\x00", "\\x00")
    if len(text) <= ERROR_LENGTH_MAX:
        return text
    return text[: ERROR_LENGTH_MAX - len(_TRUNCATED)] + _TRUNCATED
