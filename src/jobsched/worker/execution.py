"""One call of a handler, under its timeout, reduced to a ``HandlerEnding``.

Nothing here touches storage or the queue: the service turns the ending into an
attempt outcome (with the retry decision) and records it.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import inspect
from collections.abc import Coroutine
from concurrent.futures import Executor
from typing import Any

from jobsched.core.models import AttemptStatus, JsonObject
from jobsched.worker.context import AttemptState, RunContext
from jobsched.worker.endings import (
    ERROR_LENGTH_MAX,
    HandlerEnding,
    bound_error_text,
    failure,
    failure_from,
    success,
)
from jobsched.worker.isolation import run_in_child_process
from jobsched.worker.registry import Handler, HandlerOptions, HandlerRegistry, is_async_handler
from jobsched.worker.threads import HandlerThreads

__all__ = [
    "CANCEL_GRACE_SECONDS",
    "ERROR_LENGTH_MAX",
    "SHELL_DISABLED_ERROR",
    "HandlerEnding",
    "bound_error_text",
    "failure",
    "failure_from",
    "run_handler",
    "success",
]

# How long a cancelled handler may take to unwind (finally blocks, a child's exit).
CANCEL_GRACE_SECONDS = 1.0
SHELL_DISABLED_ERROR = (
    "the shell handler is disabled on this worker (enable it with worker.shell.enabled: true)"
)
_THREADS = HandlerThreads()


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
    ``context.cancelled`` is set first, then an async handler is cancelled (a
    process-isolated one killed) and given ``CANCEL_GRACE_SECONDS`` to unwind; a
    thread handler is left to notice the flag (a thread cannot be killed) while the
    attempt ends at once. Sync handlers run on ``executor`` (default: a new daemon
    thread per call). The ending's result is chosen by ``AttemptState.recorded_result``.
    """
    handler = registry.get(context.type)
    if handler is None:
        context.state.handler_ended.set()
        return failure(unknown_type_error(context.type), retryable=False)
    options = registry.options(context.type)
    call = asyncio.ensure_future(_call(handler, options, payload, context, executor))
    try:
        done, _ = await asyncio.wait({call}, timeout=context.timeout_seconds)
    except asyncio.CancelledError:
        await _give_up(call, context)
        raise
    if not done:
        await _give_up(call, context)
        ending = HandlerEnding(
            AttemptStatus.TIMED_OUT, error=f"timed out after {context.timeout_seconds:g}s"
        )
    elif call.cancelled():  # a cancellation inside the handler, not of this attempt
        ending = failure("CancelledError: the handler was cancelled")
    elif (error := call.exception()) is not None:
        ending = failure_from(error, options)
    else:
        ending = call.result()
    return _with_recorded_result(ending, context.state)


def unknown_type_error(type_name: str) -> str:
    if type_name == "shell":
        return SHELL_DISABLED_ERROR
    return f"no handler registered for type {type_name!r}"


def _with_recorded_result(ending: HandlerEnding, state: AttemptState) -> HandlerEnding:
    result = state.recorded_result(ending.result)
    return ending if result is ending.result else dataclasses.replace(ending, result=result)


async def _give_up(call: asyncio.Future[HandlerEnding], context: RunContext) -> None:
    context.cancelled.set()
    call.cancel()
    # Whatever the handler raises from here on is of no interest; retrieve it so that
    # asyncio does not log "exception was never retrieved".
    call.add_done_callback(lambda ended: ended.cancelled() or ended.exception())
    await asyncio.wait({call}, timeout=CANCEL_GRACE_SECONDS)


def _call(
    handler: Handler,
    options: HandlerOptions,
    payload: JsonObject,
    context: RunContext,
    executor: Executor | None,
) -> Coroutine[Any, Any, HandlerEnding]:
    if options.isolation == "process":
        return run_in_child_process(handler, options, payload, context)
    return _call_here(handler, payload, context, executor or _THREADS)


async def _call_here(
    handler: Handler, payload: JsonObject, context: RunContext, executor: Executor
) -> HandlerEnding:
    if is_async_handler(handler):
        returned = await _invoke_on_loop(handler, payload, context)
    else:
        returned = await _invoke_in_thread(handler, payload, context, executor)
    return success(returned)


async def _invoke_on_loop(handler: Handler, payload: JsonObject, context: RunContext) -> object:
    try:
        returned = handler(payload, context)
        if inspect.isawaitable(returned):
            return await returned
        return returned
    finally:
        context.state.handler_ended.set()


async def _invoke_in_thread(
    handler: Handler, payload: JsonObject, context: RunContext, executor: Executor
) -> object:
    ended = context.state.handler_ended
    call_with_context = functools.partial(contextvars.copy_context().run, handler, payload, context)

    def in_thread() -> object:
        try:
            returned = call_with_context()
        except BaseException:
            ended.set()
            raise
        if not inspect.isawaitable(returned):
            ended.set()
        return returned

    submitted = executor.submit(in_thread)
    try:
        returned = await asyncio.wrap_future(submitted)
    except asyncio.CancelledError:
        if submitted.cancelled():  # given up before its thread even started
            ended.set()
        raise
    if inspect.isawaitable(returned):  # a plain function that returned a coroutine
        try:
            return await returned
        finally:
            ended.set()
    return returned
