"""Process isolation: each attempt of an ``isolation="process"`` handler in a child of its own.

Children come from a multiprocessing fork server (spawned where there is none):
started clean, they share no threads, locks or connections with the worker, and a
fork from the server takes milliseconds. The worker sends the child a
``ChildCall`` (the handler by reference, the payload, the run's identity) and
reads back, over a pipe, the handler's progress reports, its log records (handled
by the worker's logging, so they follow its format) and finally its
``HandlerEnding``, computed in the child.

Stopping: the worker kills the child (SIGKILL) when the attempt is given up
(timeout, cancellation, lost lease, shutdown) and waits until it is gone. The
child ignores SIGINT and SIGTERM, so a Ctrl-C or a service manager signalling the
whole process group leaves its fate to the worker (finish within the shutdown
grace, or be killed and handed back). A child whose worker dies (SIGKILL, crash)
notices its end of a pipe closing and exits at once, so a run rescued elsewhere
is not executed twice at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import multiprocessing
import multiprocessing.context
import os
import pickle
import signal
import threading
import traceback
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from jobsched.core.models import JsonObject
from jobsched.worker.context import AttemptState, RunContext
from jobsched.worker.endings import HandlerEnding, failure, failure_from, success
from jobsched.worker.registry import Handler, HandlerOptions


def _start_context() -> (
    multiprocessing.context.ForkServerContext | multiprocessing.context.SpawnContext
):
    if "forkserver" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")  # no fork server (Windows)


_CONTEXT = _start_context()
# How long a child that sent its ending may take to exit (atexit hooks, the
# handler's own non-daemon threads) before it is killed.
CHILD_EXIT_GRACE_SECONDS = 1.0
# Exit code of a child that outlived its worker.
EXIT_CODE_WORKER_GONE = 75
_LOG_RECORD_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)


@dataclass(frozen=True, slots=True)
class ChildCall:
    """Everything a child needs to run one attempt; pickled to it."""

    handler: Handler
    options: HandlerOptions
    payload: JsonObject
    run_id: uuid.UUID
    job_id: uuid.UUID
    attempt: int
    scheduled_for: datetime
    type: str
    queue: str
    timeout_seconds: float | None
    log_level: int
    attempt_id: uuid.UUID


def preload_in_children(module_names: Sequence[str]) -> None:
    """Import these modules once in the fork server, so children start without importing them.

    Takes effect only before the first child of this process starts; a module that
    cannot be imported there is skipped (the child imports it itself).
    """
    if _CONTEXT.get_start_method() == "forkserver":
        _CONTEXT.set_forkserver_preload(["jobsched.worker.isolation", *module_names])


async def run_in_child_process(
    handler: Handler, options: HandlerOptions, payload: JsonObject, context: RunContext
) -> HandlerEnding:
    """Run one attempt of ``handler`` in a new child process; return how it ended.

    Cancelling the caller kills the child and waits until it is gone. A child that
    ends without sending its ending (killed, crashed, exited) fails the attempt,
    retryably; a handler that cannot be sent to a child fails it for good. When this
    returns or raises, the child is gone and ``context.state.handler_ended`` is set.
    """
    results_reader, results_writer = _CONTEXT.Pipe(duplex=False)
    alive_reader, alive_writer = _CONTEXT.Pipe(duplex=False)
    process = _CONTEXT.Process(
        target=child_main,
        args=(_child_call(handler, options, payload, context), results_writer, alive_reader),
        name=f"jobsched-run-{context.run_id}",
    )
    ending: HandlerEnding | None = None
    try:
        try:
            await _start(process)
        except Exception as error:
            # What cannot be pickled never will be; a fork server that failed may recover.
            final = isinstance(error, pickle.PicklingError | TypeError | AttributeError)
            text = f"cannot start the handler's process: {type(error).__name__}: {error}"
            return failure(text, retryable=not final)
        finally:
            results_writer.close()
            alive_reader.close()
        ending = await _receive_ending(process, results_reader, context.state)
        return ending
    finally:
        await _make_gone(process, exit_grace_seconds=CHILD_EXIT_GRACE_SECONDS if ending else 0.0)
        if process.pid is not None and process.exitcode is not None:
            process.close()
        results_reader.close()
        alive_writer.close()  # only now: the child takes its closing as the worker's death
        context.state.handler_ended.set()


def _child_call(
    handler: Handler, options: HandlerOptions, payload: JsonObject, context: RunContext
) -> ChildCall:
    return ChildCall(
        handler=handler,
        options=options,
        payload=payload,
        run_id=context.run_id,
        job_id=context.job_id,
        attempt=context.attempt,
        scheduled_for=context.scheduled_for,
        type=context.type,
        queue=context.queue,
        timeout_seconds=context.timeout_seconds,
        log_level=context.logger.logger.getEffectiveLevel(),
        attempt_id=context.attempt_id,
    )


async def _start(process: BaseProcess) -> None:
    # In a thread: the first start launches the fork server, which imports modules.
    starting = asyncio.ensure_future(asyncio.to_thread(process.start))
    try:
        await asyncio.shield(starting)
    except asyncio.CancelledError:
        # Let the start complete, so that the caller's cleanup finds a child to kill.
        with contextlib.suppress(Exception):
            await starting
        raise


async def _receive_ending(
    process: BaseProcess, reader: Connection, state: AttemptState
) -> HandlerEnding:
    while True:
        await _readable(reader.fileno())
        while reader.poll():
            try:
                kind, value = reader.recv()
            except EOFError:  # the child is gone without its ending
                return await _ending_of_silent_exit(process)
            if kind == "ending":
                assert isinstance(value, HandlerEnding)
                return value
            _apply_report(kind, value, state)


def _apply_report(kind: str, value: Any, state: AttemptState) -> None:
    if kind == "progress":
        state.set_progress(value)
    elif kind == "result":
        state.set_result(value)
    elif kind == "log":
        record = logging.makeLogRecord(value)
        logging.getLogger(record.name).handle(record)


async def _ending_of_silent_exit(process: BaseProcess) -> HandlerEnding:
    await _make_gone(process, exit_grace_seconds=CHILD_EXIT_GRACE_SECONDS)
    code = process.exitcode
    if code is not None and code < 0:
        how = f"was killed by signal {signal.Signals(-code).name}"
    else:
        how = f"exited with code {code}"
    return failure(f"the handler's process {how} before reporting an outcome (see the log)")


async def _make_gone(process: BaseProcess, *, exit_grace_seconds: float) -> None:
    """Wait up to the grace for the child to exit, then kill it; return once it is gone."""
    if process.pid is None:  # never started
        return
    if not await _exited(process, exit_grace_seconds):
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await _exited(process, None)


async def _exited(process: BaseProcess, timeout_seconds: float | None) -> bool:
    if process.exitcode is not None:
        return True
    if timeout_seconds is not None and timeout_seconds <= 0:
        return False
    try:
        await asyncio.wait_for(_readable(process.sentinel), timeout_seconds)
    except TimeoutError:
        return False
    process.join()  # at once: the sentinel is readable once the child is reaped
    return True


def _readable(fd: int) -> Awaitable[None]:
    """Done when ``fd`` is readable (data, or end of file)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, on_readable)
    ready.add_done_callback(lambda _: loop.remove_reader(fd))
    return ready


# --- in the child ------------------------------------------------------------------


class _ToWorker:
    """The child's end of the results pipe, shared by the handler's threads and logging."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._lock = threading.Lock()

    def send(self, kind: str, value: object) -> None:
        with self._lock:
            self._connection.send((kind, value))


class _LogToWorker(logging.Handler):
    """Sends each record to the worker, rendered (its arguments may not pickle)."""

    def __init__(self, to_worker: _ToWorker) -> None:
        super().__init__()
        self._to_worker = to_worker

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            extra = {
                key: value
                for key, value in record.__dict__.items()
                if key not in _LOG_RECORD_STANDARD and isinstance(value, str | int | float | bool)
            }
            fields = {
                "name": record.name,
                "levelno": record.levelno,
                "levelname": record.levelname,
                "msg": message,
                "created": record.created,
                "msecs": record.msecs,
                "process": record.process,
                "processName": record.processName,
                "threadName": record.threadName,
            }
            self._to_worker.send("log", {**extra, **fields})
        except Exception:  # logging must never break the handler
            self.handleError(record)


def child_main(call: ChildCall, results: Connection, worker_alive: Connection) -> None:
    """A child's entry point: run the handler once and send its ending to the worker."""
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, signal.SIG_IGN)
    threading.Thread(
        target=_exit_when_worker_dies,
        args=(worker_alive,),
        name="jobsched-worker-watch",
        daemon=True,
    ).start()
    to_worker = _ToWorker(results)
    root = logging.getLogger()
    root.handlers[:] = [_LogToWorker(to_worker)]
    root.setLevel(call.log_level)
    context = RunContext(
        run_id=call.run_id,
        job_id=call.job_id,
        attempt=call.attempt,
        scheduled_for=call.scheduled_for,
        type=call.type,
        queue=call.queue,
        timeout_seconds=call.timeout_seconds,
        attempt_id=call.attempt_id,
        state=AttemptState(forward=to_worker.send),
    )
    to_worker.send("ending", _call_handler(call, context))
    results.close()


def _call_handler(call: ChildCall, context: RunContext) -> HandlerEnding:
    try:
        returned = call.handler(call.payload, context)
        if inspect.isawaitable(returned):
            returned = asyncio.run(_awaited(returned))
    except Exception as error:
        return failure_from(error, call.options)
    return success(returned)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _exit_when_worker_dies(worker_alive: Connection) -> None:
    # The worker never writes to this pipe; end of file means it closed it or died.
    with contextlib.suppress(EOFError, OSError):
        worker_alive.recv()
    os._exit(EXIT_CODE_WORKER_GONE)
