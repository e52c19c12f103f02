"""What a handler knows about the run it executes, and what the worker shares with it."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from jobsched.core.ids import new_id
from jobsched.core.models import JsonObject, Run
from jobsched.core.redaction import DEFAULT_REDACTION, HeaderRedaction
from jobsched.worker.errors import UnstorableResultError

if TYPE_CHECKING:
    import httpx

    from jobsched.config.settings import ShellSettings

HANDLER_LOGGER_NAME = "jobsched.handler"
# The largest result or progress report a handler may give through its context, as
# UTF-8 JSON: these land in the attempt's row, which must stay small.
RESULT_BYTES_MAX = 16 * 1024

# Called with ("progress" | "result", value) each time a handler reports; a handler
# in a child process uses it to send its reports to the worker.
ReportForwarder = Callable[[str, JsonObject], None]


@dataclass(frozen=True, slots=True)
class WorkerResources:
    """Resources one worker creates at start, shares with every handler and closes at stop.

    ``shell`` is the ``shell`` handler's configuration (None outside a worker).
    ``http_client`` connects only where ``worker.http.allowed_networks`` lets it
    (``jobsched.worker.handlers.http_network``).
    """

    http_client: httpx.AsyncClient
    http_response_bytes_max: int
    shell: ShellSettings | None = None
    # Environment variables an ``http`` header may take its value from.
    http_env_allowlist: frozenset[str] = frozenset()
    # Headers not carried to another origin when a redirect is followed.
    http_redaction: HeaderRedaction = DEFAULT_REDACTION


# Guards the creation of a ``Flag``'s event, which is rare (a thread waiting on it).
_FLAG_EVENT_CREATION = threading.Lock()


class Flag:
    """``threading.Event``'s ``is_set``, ``set`` and ``wait``, cheap to create.

    A worker makes two per run, and most are only ever set and read. An Event
    builds a lock and a condition up front; a ``Flag`` builds its Event only when a
    thread first waits on it. Safe to use from any thread.
    """

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set or ``timeout`` passes; whether it is set."""
        if self._set:
            return True
        with _FLAG_EVENT_CREATION:
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        # ``set`` may have run before the event existed, and then set nothing: look again.
        if self._set:
            event.set()
        return event.wait(timeout)


class AttemptState:
    """What one attempt's handler reported, and whether its code still runs.

    The worker's side of ``RunContext``: handlers use the context's methods. Safe to
    use from any thread. ``handler_ended`` is set once the handler's code no longer
    runs (its coroutine finished, its thread returned, its child process is gone);
    the worker hands a run back at shutdown only then.
    """

    def __init__(self, forward: ReportForwarder | None = None) -> None:
        self._lock = threading.Lock()
        self._progress: JsonObject | None = None
        # Progress reports are numbered: the worker's heartbeat stores the latest one
        # and notes its number, so that it sends a report once, or again if it failed.
        self._progress_version = 0
        self._progress_stored_version = 0
        self._result: JsonObject | None = None
        self._forward = forward
        self.handler_ended = Flag()

    @property
    def progress(self) -> JsonObject | None:
        with self._lock:
            return self._progress

    @property
    def result(self) -> JsonObject | None:
        with self._lock:
            return self._result

    def set_progress(self, progress: object) -> None:
        """Keep ``progress`` as the latest report; ``UnstorableResultError`` if it cannot be."""
        checked = storable_json_object(progress, "progress")
        with self._lock:
            self._progress = checked
            self._progress_version += 1
        if self._forward is not None:
            self._forward("progress", checked)

    def unstored_progress(self) -> tuple[int, JsonObject] | None:
        """The latest progress report with its version, unless that version is stored."""
        with self._lock:
            if self._progress is None or self._progress_version == self._progress_stored_version:
                return None
            return self._progress_version, self._progress

    def progress_stored(self, version: int) -> None:
        """Note that the report of ``version`` (from ``unstored_progress``) is stored."""
        with self._lock:
            self._progress_stored_version = max(self._progress_stored_version, version)

    def set_result(self, result: object) -> None:
        """Keep ``result`` as the attempt's result; ``UnstorableResultError`` if it cannot be."""
        checked = storable_json_object(result, "result")
        with self._lock:
            self._result = checked
        if self._forward is not None:
            self._forward("result", checked)

    def recorded_result(self, returned: JsonObject | None) -> JsonObject | None:
        """The attempt's result: what the handler returned, else what it set, else its
        last progress as ``{"progress": ...}``, else None.
        """
        if returned is not None:
            return returned
        with self._lock:
            if self._result is not None:
                return self._result
            if self._progress is not None:
                return {"progress": self._progress}
        return None


@dataclass(frozen=True, slots=True)
class RunContext:
    """The second argument of every handler: which attempt of which run this is.

    ``cancelled`` is set when the worker gives up on the attempt (its timeout passed,
    the run was cancelled, its lease was lost, the worker is shutting down). An async
    handler is cancelled as well and a process-isolated one killed; a sync handler
    runs in a thread that cannot be stopped from outside, so a long one should check
    ``is_cancelled()`` now and then and return early.

    ``attempt_id`` tells this execution apart from every other, even one of the same
    run and attempt number (a run handed back at shutdown is executed again with the
    same ``attempt``).

    ``report_progress`` and ``set_result`` give the attempt a result besides the
    handler's return value (see ``AttemptState.recorded_result``): a failed or
    timed-out attempt then shows how far it got.
    """

    run_id: uuid.UUID
    job_id: uuid.UUID
    attempt: int
    scheduled_for: datetime
    type: str
    queue: str
    timeout_seconds: float | None
    resources: WorkerResources | None = None
    # Unique to this execution: a run handed back at shutdown runs again under the
    # same attempt number, but never under the same attempt id.
    attempt_id: uuid.UUID = field(default_factory=new_id)
    cancelled: Flag = field(default_factory=Flag)
    state: AttemptState = field(default_factory=AttemptState, repr=False, compare=False)
    # Made on first use: most handlers never log.
    _logger: logging.LoggerAdapter[logging.Logger] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @classmethod
    def for_run(
        cls, run: Run, *, timeout_seconds: float | None, resources: WorkerResources | None
    ) -> RunContext:
        """The context of ``run``'s current attempt; its logger carries run_id and attempt."""
        return cls(
            run_id=run.id,
            job_id=run.job_id,
            attempt=run.attempt,
            scheduled_for=run.scheduled_for,
            type=run.job_type,
            queue=run.queue,
            timeout_seconds=timeout_seconds,
            resources=resources,
        )

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """The handler logger, carrying this run's id, attempt and type on every record."""
        if self._logger is None:
            logger = run_logger(self.run_id, self.attempt, self.type, job_id=self.job_id)
            object.__setattr__(self, "_logger", logger)
            assert self._logger is not None
        return self._logger

    def is_cancelled(self) -> bool:
        """Whether the worker has given up on this attempt; safe to call from any thread."""
        return self.cancelled.is_set()

    def report_progress(self, progress: JsonObject) -> Awaitable[None]:
        """Note how far the handler got (a JSON object of at most ``RESULT_BYTES_MAX``).

        Only the latest report is kept: the worker's heartbeats store it in the attempt,
        where the API shows it while the run runs, and it becomes the attempt's result
        if the handler neither returns nor sets one. Raises ``UnstorableResultError``
        for a value that cannot be recorded. Safe from any thread; the returned
        awaitable is already complete, so an async handler awaits it and a sync one
        just calls this.
        """
        self.state.set_progress(progress)
        return _COMPLETED

    def set_result(self, result: JsonObject) -> None:
        """Make ``result`` the attempt's result unless the handler returns one.

        Recorded whatever the attempt's end, a failure included. Bounded like
        ``report_progress``; safe from any thread.
        """
        self.state.set_result(result)


def run_logger(
    run_id: uuid.UUID, attempt: int, job_type: str, *, job_id: uuid.UUID | None = None
) -> logging.LoggerAdapter[logging.Logger]:
    """The handler logger, carrying the run's id, attempt, type and job on every record."""
    fields: dict[str, object] = {"run_id": str(run_id), "attempt": attempt, "job_type": job_type}
    if job_id is not None:
        fields["job_id"] = str(job_id)
    return logging.LoggerAdapter(logging.getLogger(HANDLER_LOGGER_NAME), fields)


def storable_json_object(value: object, what: str) -> JsonObject:
    """``value`` as plain JSON, if it is a JSON object that a row can hold and is small."""
    if not isinstance(value, dict):
        raise UnstorableResultError(what, f"must be a JSON object, not {type(value).__name__}")
    try:
        encoded = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise UnstorableResultError(what, f"is not JSON: {error}") from error
    size_bytes = len(encoded.encode("utf-8"))
    if size_bytes > RESULT_BYTES_MAX:
        raise UnstorableResultError(
            what, f"is {size_bytes} bytes as JSON; at most {RESULT_BYTES_MAX} are kept"
        )
    normalised: JsonObject = json.loads(encoded)
    if holds_nul(normalised):
        raise UnstorableResultError(what, "holds a NUL character, which cannot be stored")
    return normalised


def holds_nul(value: object) -> bool:
    """Whether a JSON value holds a NUL character anywhere (PostgreSQL JSONB cannot)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(holds_nul(item) for item in value)
    return False


class _Completed:
    """An awaitable that is already done: ``await`` it or not, nothing waits."""

    def __await__(self) -> Generator[None, None, None]:
        yield from ()


_COMPLETED = _Completed()
