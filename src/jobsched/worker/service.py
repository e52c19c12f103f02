"""The worker service: claim runs, execute them concurrently, record every attempt.

One worker is one asyncio task tree: a claim loop that keeps up to ``concurrency``
runs in flight, one task per run, a heartbeat that renews every held lease in one
statement, and an outcome recorder that batches ``finish_attempts``.

Guarantees (ARCHITECTURE.md, 3 and 4): a run's outcome is written only while this
worker holds its lease (storage fences by attempt); a run whose lease renewal is
refused is abandoned at once, its outcome never written; a failed attempt becomes
``retrying`` or ``dead`` by the run's retry policy. On stop the worker claims no
more, gives in-flight runs ``shutdown_grace_seconds`` to end, then abandons the
rest: their leases expire and the scheduler's rescuer retries them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from jobsched.config.settings import WorkerSettings
from jobsched.core.errors import QueueError, StorageError
from jobsched.core.models import AttemptStatus, RetryPolicy, Run, RunStatus
from jobsched.core.retry import backoff_delay_seconds, decide_retry
from jobsched.monitoring.metrics import (
    JOB_DURATION,
    JOBS_COMPLETED,
    JOBS_DEAD,
    JOBS_FAILED,
    JOBS_RETRIED,
    JOBS_STARTED,
    JOBS_TIMED_OUT,
    OUTCOMES_REFUSED,
    RUNS_IN_PROGRESS,
)
from jobsched.queue.base import RunQueue
from jobsched.storage.base import AttemptOutcome, Storage
from jobsched.worker.context import RunContext, WorkerResources
from jobsched.worker.execution import HandlerEnding, run_handler
from jobsched.worker.recording import OutcomeRecorder
from jobsched.worker.registry import HandlerRegistry

logger = logging.getLogger("jobsched.worker")

# How long to wait before trying the database (or broker) again after it failed.
_OUTAGE_BACKOFF = RetryPolicy(
    max_attempts=1, backoff="exponential", initial_delay_seconds=0.1, max_delay_seconds=5.0
)
DEFAULT_POLL_INTERVAL_SECONDS = 0.2


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class _InFlight:
    """A claimed run this worker is executing. ``finishing``: its outcome is being written."""

    run: Run
    context: RunContext
    task: asyncio.Task[None] = field(init=False)
    finishing: bool = False

    @property
    def key(self) -> tuple[uuid.UUID, int]:
        return (self.run.id, self.run.attempt)


class Worker:
    """Executes runs from ``queue`` with the handlers of ``registry`` until stopped.

    ``default_timeout_seconds`` applies to runs without a timeout of their own (None:
    such runs have no limit). ``clock`` (aware UTC) dates retries; lease times come
    from the database. ``poll_interval_seconds`` is how long one claim waits for work.
    """

    def __init__(
        self,
        storage: Storage,
        queue: RunQueue,
        registry: HandlerRegistry,
        settings: WorkerSettings,
        *,
        default_timeout_seconds: float | None,
        clock: Callable[[], datetime] = utc_now,
        poll_interval_seconds: float = DEFAULT_POLL_INTERVAL_SECONDS,
    ) -> None:
        self._storage = storage
        self._queue = queue
        self._registry = registry
        self._settings = settings
        self._default_timeout_seconds = default_timeout_seconds
        self._clock = clock
        self._poll_interval_seconds = poll_interval_seconds
        self.worker_id = settings.resolved_id()
        self._in_flight: dict[tuple[uuid.UUID, int], _InFlight] = {}
        self._recorder = OutcomeRecorder(storage)
        self._resources: WorkerResources | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stop_requested = asyncio.Event()
        self._capacity_changed = asyncio.Event()
        self._finished = asyncio.Event()
        self._started = False

    @property
    def in_flight_count(self) -> int:
        return len(self._in_flight)

    # --- lifecycle -------------------------------------------------------------

    async def run(self) -> None:
        """Work until ``stop()``/``request_stop()``; a worker runs once."""
        if self._started:
            raise RuntimeError("a Worker can run only once; make a new one")
        self._started = True
        logger.info(
            "worker %s started: queues=%s concurrency=%d",
            self.worker_id,
            ",".join(self._settings.queues),
            self._settings.concurrency,
        )
        try:
            async with self._shared_resources():
                heartbeat = asyncio.create_task(self._heartbeat_loop(), name="jobsched-heartbeat")
                try:
                    await self._claim_until_stopped()
                    await self._wait_for_in_flight(self._settings.shutdown_grace_seconds)
                finally:
                    await self._abandon_all()
                    await self._recorder.close()
                    await _cancel_and_wait(heartbeat)
        finally:
            self._finished.set()
            logger.info("worker %s stopped", self.worker_id)

    def request_stop(self) -> None:
        """Stop claiming; ``run()`` returns once in-flight runs end or the grace runs out."""
        self._stop_requested.set()
        self._capacity_changed.set()

    async def stop(self) -> None:
        """``request_stop()`` and wait for ``run()`` to return."""
        self.request_stop()
        if self._started:
            await self._finished.wait()

    @asynccontextmanager
    async def _shared_resources(self) -> AsyncIterator[None]:
        # Its own pool, sized to concurrency: the loop's default one may be smaller.
        executor = ThreadPoolExecutor(
            max_workers=self._settings.concurrency, thread_name_prefix="jobsched-handler"
        )
        try:
            async with httpx.AsyncClient(follow_redirects=True) as client:
                self._resources = WorkerResources(client, self._settings.http_response_bytes_max)
                self._executor = executor
                yield
        finally:
            self._resources = None
            # A thread handler past its timeout cannot be stopped; do not wait for it.
            executor.shutdown(wait=False, cancel_futures=True)

    async def _wait_for_in_flight(self, grace_seconds: float) -> None:
        tasks = [entry.task for entry in self._in_flight.values()]
        if tasks:
            logger.info("waiting up to %gs for %d runs in flight", grace_seconds, len(tasks))
            await asyncio.wait(tasks, timeout=grace_seconds)

    async def _abandon_all(self) -> None:
        """Cancel every run still in flight, writing no outcome: the rescuer retries them."""
        entries = list(self._in_flight.values())
        for entry in entries:
            logger.warning(
                "run %s attempt %d abandoned at shutdown; it is retried when its lease expires",
                entry.run.id,
                entry.run.attempt,
            )
            entry.context.cancelled.set()
            entry.task.cancel()
        if entries:
            await asyncio.gather(*(entry.task for entry in entries), return_exceptions=True)

    # --- claiming --------------------------------------------------------------

    async def _claim_until_stopped(self) -> None:
        outage_count = 0
        while not self._stop_requested.is_set():
            self._capacity_changed.clear()
            capacity = self._settings.concurrency - len(self._in_flight)
            if capacity <= 0:
                await self._capacity_changed.wait()
                continue
            try:
                runs = await self._queue.claim(
                    self.worker_id,
                    self._settings.queues,
                    capacity,
                    self._settings.lease_seconds,
                    wait_seconds=self._poll_interval_seconds,
                )
            except Exception as error:  # an outage must not end the worker
                outage_count += 1
                delay_seconds = backoff_delay_seconds(_OUTAGE_BACKOFF, outage_count)
                _log_outage("claim runs", error, delay_seconds)
                await self._sleep_unless_stopped(delay_seconds)
                continue
            outage_count = 0
            for run in runs:
                self._start(run)

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), timeout=seconds)

    def _start(self, run: Run) -> None:
        timeout_seconds = (
            run.timeout_seconds
            if run.timeout_seconds is not None
            else self._default_timeout_seconds
        )
        context = RunContext.for_run(
            run, timeout_seconds=timeout_seconds, resources=self._resources
        )
        entry = _InFlight(run, context)
        entry.task = asyncio.create_task(
            self._execute(entry), name=f"jobsched-run-{run.id}-{run.attempt}"
        )
        self._in_flight[entry.key] = entry

    # --- executing -------------------------------------------------------------

    async def _execute(self, entry: _InFlight) -> None:
        run = entry.run
        labels = {"type": run.job_type, "queue": run.queue}
        JOBS_STARTED.labels(**labels).inc()
        RUNS_IN_PROGRESS.labels(**labels).inc()
        started = time.monotonic()
        try:
            ending = await run_handler(self._registry, run.payload, entry.context, self._executor)
            duration_seconds = time.monotonic() - started
            JOB_DURATION.labels(**labels).observe(duration_seconds)
            entry.finishing = True
            await self._finish(run, ending, duration_seconds)
        except Exception:
            logger.exception("run %s: the worker failed to finish its attempt", run.id)
        finally:
            RUNS_IN_PROGRESS.labels(**labels).dec()
            self._in_flight.pop(entry.key, None)
            self._capacity_changed.set()

    async def _finish(self, run: Run, ending: HandlerEnding, duration_seconds: float) -> None:
        outcome = self.outcome_for(run, ending)
        accepted = await self._record(outcome)
        if accepted is None:
            return
        _log_attempt_end(run, outcome, duration_seconds, accepted=accepted)
        if accepted:
            _count_outcome(run, outcome)
        else:
            OUTCOMES_REFUSED.inc()
        if accepted and outcome.run_status is RunStatus.DEAD:
            await self._queue_call("dead_letter", self._queue.dead_letter([run]))
        else:
            # A retry is published again by the outbox once its delay has passed; a
            # refused outcome means the run was rescued and republished: either way
            # this delivery is spent.
            await self._queue_call("ack", self._queue.ack([run]))

    def outcome_for(self, run: Run, ending: HandlerEnding) -> AttemptOutcome:
        """The outcome of ``run``'s current attempt: success, a retry by policy, or dead."""
        if ending.attempt_status is AttemptStatus.SUCCEEDED:
            return AttemptOutcome(
                run.id,
                run.attempt,
                self.worker_id,
                AttemptStatus.SUCCEEDED,
                RunStatus.SUCCEEDED,
                result=ending.result,
            )
        decision = decide_retry(run.retry, run.attempt, retryable=ending.retryable)
        return AttemptOutcome(
            run.id,
            run.attempt,
            self.worker_id,
            ending.attempt_status,
            RunStatus.RETRYING if decision.retry else RunStatus.DEAD,
            error=ending.error,
            retry_at=self._clock() + decision.delay if decision.retry else None,
        )

    async def _record(self, outcome: AttemptOutcome) -> bool | None:
        """Write ``outcome``, trying again while the database is down.

        None: it cannot be written for another reason (a bug); the run's lease then
        expires and the rescuer retries it, as if this worker had died.
        """
        outage_count = 0
        while True:
            try:
                return await self._recorder.record(outcome)
            except StorageError as error:
                outage_count += 1
                delay_seconds = backoff_delay_seconds(_OUTAGE_BACKOFF, outage_count)
                _log_outage(f"record the outcome of run {outcome.run_id}", error, delay_seconds)
                await asyncio.sleep(delay_seconds)
            except Exception:
                logger.exception("run %s: its outcome cannot be recorded", outcome.run_id)
                return None

    async def _queue_call(self, what: str, call: Awaitable[None]) -> None:
        try:
            await call
        except Exception as error:  # the outcome is committed; log and go on
            logger.warning("queue %s failed: %s: %s", what, type(error).__name__, error)

    # --- leases ----------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.heartbeat_interval_seconds)
            await self.renew_leases()

    async def renew_leases(self) -> None:
        """Renew every held lease in one call; abandon the runs whose lease was lost."""
        held = list(self._in_flight.values())
        if not held:
            return
        try:
            renewed = await self._storage.renew_leases(
                self.worker_id, [entry.key for entry in held], self._settings.lease_seconds
            )
        except Exception as error:  # try again at the next beat
            _log_outage(
                f"renew {len(held)} leases", error, self._settings.heartbeat_interval_seconds
            )
            return
        for entry in held:
            # A run already writing its outcome is left to the write, which storage fences.
            current = self._in_flight.get(entry.key) is entry
            if entry.run.id not in renewed and current and not entry.finishing:
                self._abandon_lost_lease(entry)

    def _abandon_lost_lease(self, entry: _InFlight) -> None:
        logger.warning(
            "run %s attempt %d: lease lost (taken over or rescued); abandoning it",
            entry.run.id,
            entry.run.attempt,
        )
        OUTCOMES_REFUSED.inc()
        entry.context.cancelled.set()
        entry.task.cancel()


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _log_outage(action: str, error: Exception, retry_in_seconds: float) -> None:
    if isinstance(error, StorageError | QueueError):
        logger.warning("cannot %s: %s; trying again in %.1fs", action, error, retry_in_seconds)
    else:
        logger.error("cannot %s; trying again in %.1fs", action, retry_in_seconds, exc_info=error)


def _log_attempt_end(
    run: Run, outcome: AttemptOutcome, duration_seconds: float, *, accepted: bool
) -> None:
    recorded = outcome.run_status.value if accepted else "refused (lease lost)"
    error = f" error={outcome.error.splitlines()[0][:200]!r}" if outcome.error else ""
    logger.log(
        logging.INFO if outcome.attempt_status is AttemptStatus.SUCCEEDED else logging.WARNING,
        "run %s type=%s attempt=%d outcome=%s run=%s duration=%.3fs%s",
        run.id,
        run.job_type,
        run.attempt,
        outcome.attempt_status.value,
        recorded,
        duration_seconds,
        error,
        extra={"run_id": str(run.id), "attempt": run.attempt, "job_type": run.job_type},
    )


def _count_outcome(run: Run, outcome: AttemptOutcome) -> None:
    labels = {"type": run.job_type, "queue": run.queue}
    if outcome.run_status is RunStatus.SUCCEEDED:
        JOBS_COMPLETED.labels(**labels).inc()
        return
    JOBS_FAILED.labels(**labels).inc()
    if outcome.attempt_status is AttemptStatus.TIMED_OUT:
        JOBS_TIMED_OUT.labels(**labels).inc()
    if outcome.run_status is RunStatus.RETRYING:
        JOBS_RETRIED.labels(**labels).inc()
    else:
        JOBS_DEAD.labels(**labels).inc()
