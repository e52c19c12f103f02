"""The worker service: claim runs, execute them concurrently, record every attempt.

One worker is one asyncio task tree: a claim loop that keeps up to ``concurrency``
runs in flight, one task per run, a heartbeat that renews every held lease in one
statement, and batchers that group the outcomes (``finish_attempts``) and the acks of
runs ending together. Handlers never hold up the heartbeat: async ones share the
loop (and must not block it), sync ones run in threads, ``isolation="process"``
ones in child processes.

Guarantees (ARCHITECTURE.md, 3 and 4):

* A run's outcome is written only while this worker holds its lease (storage
  fences by attempt). A run left out of a lease renewal (cancelled through the
  API, taken over, rescued) is stopped at once and its outcome never written.
* A worker that cannot renew its leases (database gone) stops the runs whose lease
  it last renewed ``lease_seconds - heartbeat_interval_seconds`` ago, before the
  lease can expire, rather than let a rescued run complete twice.
* A failed attempt becomes ``retrying`` or ``dead`` by the run's retry policy and
  its handler's ``retry_on``/``no_retry_on``.
* On ``request_stop`` the worker claims no more, gives in-flight runs
  ``shutdown_grace_seconds`` to end, then stops the rest and hands them back
  (``release_runs``: another worker takes them at once, the attempt not counted).
  Cancelled instead (a second signal), it stops at once and hands nothing back:
  the runs are rescued when their leases expire.
* The worker registers itself on start, heartbeats into the registry and
  deregisters on a clean stop; registry failures are logged, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

import httpcore
from prometheus_client import Counter, Gauge, Histogram

from jobsched.config.settings import WorkerSettings
from jobsched.core.errors import QueueError, StorageError
from jobsched.core.models import AttemptStatus, JsonObject, RetryPolicy, Run, RunStatus
from jobsched.core.redaction import HeaderRedaction
from jobsched.core.retry import backoff_delay_seconds, decide_retry
from jobsched.monitoring.metrics import (
    JOB_DURATION,
    JOBS_ABANDONED,
    JOBS_CANCELLED,
    JOBS_COMPLETED,
    JOBS_DEAD,
    JOBS_FAILED,
    JOBS_RELEASED,
    JOBS_RETRIED,
    JOBS_STARTED,
    JOBS_TIMED_OUT,
    OUTCOMES_REFUSED,
    RUNS_IN_PROGRESS,
    WORKER_HEARTBEATS,
    WORKER_LAST_HEARTBEAT,
    WORKER_SLOTS_BUSY,
)
from jobsched.queue.base import RunQueue
from jobsched.storage.base import AttemptOutcome, Storage, WorkerInfo
from jobsched.worker.context import RunContext, WorkerResources
from jobsched.worker.execution import CANCEL_GRACE_SECONDS, HandlerEnding, run_handler
from jobsched.worker.handlers.http_network import Resolver, guarded_client, system_resolver
from jobsched.worker.handlers.shell import shell_handler
from jobsched.worker.inflight import InFlight, StopReason
from jobsched.worker.isolation import preload_in_children
from jobsched.worker.presence import WorkerPresence
from jobsched.worker.recording import delivery_settler, outcome_recorder
from jobsched.worker.registry import HandlerRegistry
from jobsched.worker.threads import HandlerThreads

logger = logging.getLogger("jobsched.worker")

# How long to wait before trying the database (or broker) again after it failed.
_OUTAGE_BACKOFF = RetryPolicy(
    max_attempts=1, backoff="exponential", initial_delay_seconds=0.1, max_delay_seconds=5.0
)
DEFAULT_POLL_INTERVAL_SECONDS = 0.2
# Runs left out of one renewal are looked up (cancelled, or lease lost?) this many at
# a time: a mass rescue or cancellation must not take every pooled connection.
_DROPPED_LOOKUPS_AT_ONCE = 4
# How often a stopping worker looks whether stopped thread handlers have returned.
_HANDLER_END_POLL_SECONDS = 0.05


def utc_now() -> datetime:
    return datetime.now(UTC)


def _reachable_networks(allowed_networks: list[str] | None) -> str:
    if not allowed_networks:
        return "public addresses only (worker.http.allowed_networks admits no other)"
    return f"public addresses and {', '.join(allowed_networks)} (worker.http.allowed_networks)"


class Worker:
    """Executes runs from ``queue`` with the handlers of ``registry`` until stopped.

    ``default_timeout_seconds`` applies to runs without a timeout of their own (None:
    such runs have no limit). ``clock`` (aware UTC) dates retries; lease times come
    from the database. ``poll_interval_seconds`` is how long one claim waits for work.
    With ``settings.shell.enabled`` the ``shell`` handler is registered on ``registry``.
    The ``http`` handler's client finds addresses with ``http_resolver`` and connects
    through ``http_connector`` (httpcore's own backend by default), only where
    ``settings.http.allowed_networks`` lets it (``handlers.http_network``).
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
        http_resolver: Resolver = system_resolver,
        http_connector: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._storage = storage
        self._queue = queue
        self._registry = registry
        self._settings = settings
        self._default_timeout_seconds = default_timeout_seconds
        self._clock = clock
        self._poll_interval_seconds = poll_interval_seconds
        self._http_resolver = http_resolver
        self._http_connector = http_connector
        self.worker_id = settings.resolved_id()
        self._in_flight: dict[tuple[uuid.UUID, int], InFlight] = {}
        # Runs whose handler has returned and whose outcome is being written.
        self._finishing_count = 0
        # (when, for how long) this process last did not run: see _note_stall.
        self._last_stall: tuple[float, float] | None = None
        self._recorder = outcome_recorder(storage)
        self._acks = delivery_settler(queue, dead=False)
        self._dead_letters = delivery_settler(queue, dead=True)
        self._resources: WorkerResources | None = None
        self._threads = HandlerThreads()
        self._background: set[asyncio.Task[None]] = set()
        self._presence = WorkerPresence(
            storage, self._worker_info, timeout_seconds=settings.lease_seconds
        )
        self._stop_requested = asyncio.Event()
        self._capacity_changed = asyncio.Event()
        self._finished = asyncio.Event()
        self._started = False
        if settings.shell.enabled:
            registry.register("shell", shell_handler)

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
            "worker %s started: queues=%s concurrency=%d handlers=%s",
            self.worker_id,
            ",".join(self._settings.queues),
            self._settings.concurrency,
            ",".join(self._registry.type_names()),
        )
        logger.info(
            "worker %s: http jobs may reach %s",
            self.worker_id,
            _reachable_networks(self._settings.http.allowed_networks),
        )
        isolated_modules = self._registry.process_isolated_modules()
        if isolated_modules:
            preload_in_children(list(dict.fromkeys([*self._settings.imports, *isolated_modules])))
        try:
            with _gil_switch_interval(self._settings.gil_switch_interval_seconds):
                await self._presence.register()
                async with self._shared_resources():
                    await self._work_then_stop()
                await self._presence.deregister()
        finally:
            self._finished.set()
            logger.info("worker %s stopped", self.worker_id)

    def request_stop(self) -> None:
        """Stop claiming; ``run()`` returns once in-flight runs end or are handed back."""
        self._stop_requested.set()
        self._capacity_changed.set()

    async def stop(self) -> None:
        """``request_stop()`` and wait for ``run()`` to return."""
        self.request_stop()
        if self._started:
            await self._finished.wait()

    async def _work_then_stop(self) -> None:
        heartbeat = asyncio.create_task(self._heartbeat_loop(), name="jobsched-heartbeat")
        try:
            await self._claim_until_stopped()
            await self._wait_for_in_flight(self._settings.shutdown_grace_seconds)
            await self._hand_back_unfinished()
        finally:
            await self._abandon_all()
            await self._recorder.close()
            await _cancel_and_wait(heartbeat)
            await self._end_background_tasks()
            await self._acks.close()
            await self._dead_letters.close()

    @asynccontextmanager
    async def _shared_resources(self) -> AsyncIterator[None]:
        http = self._settings.http
        client = guarded_client(
            http.network_policy(), resolver=self._http_resolver, connector=self._http_connector
        )
        async with client:
            self._resources = WorkerResources(
                client,
                self._settings.http_response_bytes_max,
                shell=self._settings.shell,
                http_env_allowlist=frozenset(http.env_allowlist),
                http_redaction=HeaderRedaction.from_pattern(http.redact_header_pattern),
            )
            try:
                yield
            finally:
                self._resources = None

    async def _wait_for_in_flight(self, grace_seconds: float) -> None:
        tasks = [entry.task for entry in self._in_flight.values()]
        if tasks:
            logger.info("waiting up to %gs for %d runs in flight", grace_seconds, len(tasks))
            await asyncio.wait(tasks, timeout=grace_seconds)

    async def _hand_back_unfinished(self) -> None:
        """Stop the runs still going after the grace and release them to other workers.

        A run is handed back only once its handler has stopped; one whose handler
        still runs (a thread ignoring ``context.cancelled``) is left to its lease
        expiring, so that no two workers execute it at once.
        """
        entries = list(self._in_flight.values())
        if not entries:
            return
        stopping = [entry for entry in entries if entry.stop(StopReason.SHUTDOWN)]
        # Runs writing their outcome get as long as stopped handlers get to unwind.
        await asyncio.wait([entry.task for entry in entries], timeout=CANCEL_GRACE_SECONDS)
        await _wait_for_handlers_to_end(stopping, CANCEL_GRACE_SECONDS)
        stopped = []
        for entry in stopping:
            if entry.context.state.handler_ended.is_set():
                stopped.append(entry)
            else:
                logger.warning(
                    "run %s attempt %d: its handler still runs (a thread ignoring "
                    "context.cancelled?); not handed back, it is retried when its lease expires",
                    entry.run.id,
                    entry.run.attempt,
                )
                _count_abandoned(entry.run, StopReason.SHUTDOWN)
        await self._release(stopped)

    async def _release(self, entries: list[InFlight]) -> None:
        if not entries:
            return
        try:
            released = await asyncio.wait_for(
                self._storage.release_runs(self.worker_id, [entry.key for entry in entries]),
                timeout=self._settings.lease_seconds,
            )
        except Exception as error:  # the leases expire and the rescuer retries the runs
            logger.warning(
                "cannot hand back %d runs (%s: %s); they are retried when their leases expire",
                len(entries),
                type(error).__name__,
                error,
            )
            for entry in entries:
                _count_abandoned(entry.run, StopReason.SHUTDOWN)
        else:
            for run in released:
                JOBS_RELEASED.labels(type=run.job_type, queue=run.queue).inc()
            logger.info(
                "handed back %d runs for another worker (their attempts not counted): %s",
                len(released),
                ", ".join(str(run.id) for run in released),
            )
        # Released or about to be rescued, each goes back through the outbox: the
        # deliveries this worker holds are spent either way.
        await self._queue_call("ack", self._queue.ack([entry.run for entry in entries]))

    async def _abandon_all(self) -> None:
        """Stop every run still in flight, writing no outcome: the rescuer retries them."""
        entries = list(self._in_flight.values())
        for entry in entries:
            logger.warning(
                "run %s attempt %d abandoned at shutdown; it is retried when its lease expires",
                entry.run.id,
                entry.run.attempt,
            )
            if entry.stop(StopReason.SHUTDOWN, even_finishing=True):
                _count_abandoned(entry.run, StopReason.SHUTDOWN)
        if entries:
            await asyncio.gather(*(entry.task for entry in entries), return_exceptions=True)

    def _in_background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _end_background_tasks(self) -> None:
        if self._background:
            await asyncio.wait(list(self._background), timeout=CANCEL_GRACE_SECONDS)
        for task in list(self._background):
            await _cancel_and_wait(task)

    def _worker_info(self) -> WorkerInfo:
        return WorkerInfo(
            id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=list(self._settings.queues),
            handler_types=self._registry.type_names(),
            concurrency=self._settings.concurrency,
        )

    # --- claiming --------------------------------------------------------------

    async def _claim_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        outage_count = 0
        while not self._stop_requested.is_set():
            self._capacity_changed.clear()
            capacity = self._capacity()
            if capacity <= 0:
                await self._capacity_changed.wait()
                continue
            # Before the call: the leases it takes last at least lease_seconds from now.
            # Its wait is kept under a heartbeat, so that this estimate stays within
            # the safety margin of the lease deadlines.
            asked_at = loop.time()
            try:
                runs = await self._queue.claim(
                    self.worker_id,
                    self._settings.queues,
                    capacity,
                    self._settings.lease_seconds,
                    wait_seconds=min(
                        self._poll_interval_seconds, self._settings.heartbeat_interval_seconds
                    ),
                )
            except Exception as error:  # an outage must not end the worker
                outage_count += 1
                delay_seconds = backoff_delay_seconds(_OUTAGE_BACKOFF, outage_count)
                _log_outage("claim runs", error, delay_seconds)
                await self._sleep_unless_stopped(delay_seconds)
                continue
            outage_count = 0
            for run in runs:
                self._start(run, asked_at)

    def _capacity(self) -> int:
        """How many more runs to claim now.

        ``concurrency`` bounds the handlers executing at once. A run whose handler has
        returned no longer takes a slot while its outcome is written and its delivery
        acknowledged (a batch round trip or two), so short runs do not leave slots
        idle; up to ``concurrency`` such runs may wait at once.
        """
        concurrency = self._settings.concurrency
        executing = len(self._in_flight) - self._finishing_count
        return min(concurrency - executing, 2 * concurrency - len(self._in_flight))

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), timeout=seconds)

    def _start(self, run: Run, lease_confirmed_at: float) -> None:
        timeout_seconds = (
            run.timeout_seconds
            if run.timeout_seconds is not None
            else self._default_timeout_seconds
        )
        context = RunContext.for_run(
            run, timeout_seconds=timeout_seconds, resources=self._resources
        )
        entry = InFlight(run, context, lease_confirmed_at)
        entry.task = asyncio.create_task(
            self._execute(entry), name=f"jobsched-run-{run.id}-{run.attempt}"
        )
        self._in_flight[entry.key] = entry

    # --- executing -------------------------------------------------------------

    async def _execute(self, entry: InFlight) -> None:
        run = entry.run
        metrics = _run_metrics(run.job_type, run.queue)
        metrics.started.inc()
        metrics.in_progress.inc()
        WORKER_SLOTS_BUSY.inc()
        started = time.monotonic()
        try:
            ending = await run_handler(self._registry, run.payload, entry.context, self._threads)
            duration_seconds = time.monotonic() - started
            _duration(run.job_type, run.queue, ending.attempt_status).observe(duration_seconds)
            entry.finishing = True
            self._finishing_count += 1
            self._capacity_changed.set()
            await self._finish(run, ending, duration_seconds)
        except asyncio.CancelledError:
            if entry.stop_reason is None:
                raise
            # Stopped on purpose, without an outcome; whoever stopped it does the rest.
            if entry.stop_reason is StopReason.CANCELLED:
                duration = _duration(run.job_type, run.queue, AttemptStatus.CANCELLED)
                duration.observe(time.monotonic() - started)
        except Exception:
            logger.exception("run %s: the worker failed to finish its attempt", run.id)
        finally:
            metrics.in_progress.dec()
            WORKER_SLOTS_BUSY.dec()
            if entry.finishing:
                self._finishing_count -= 1
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
            await self._dead_letters.submit(run)
        else:
            # A retry is published again by the outbox once its delay has passed; a
            # refused outcome means the run was rescued and republished: either way
            # this delivery is spent.
            await self._acks.submit(run)

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
            result=ending.result,
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
                return await self._recorder.submit(outcome)
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

    # --- heartbeats and leases ---------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        """Start a heartbeat every interval, and stop runs whose lease is about to end.

        Beats are started on a fixed cadence, each in a task of its own: a renewal
        that hangs (database unreachable) delays neither the next check of lease
        deadlines nor, once it fails, the next beat.
        """
        loop = asyncio.get_running_loop()
        interval_seconds = self._settings.heartbeat_interval_seconds
        next_beat = loop.time() + interval_seconds
        beat: asyncio.Task[None] | None = None
        try:
            while True:
                wake_at = min(next_beat, self._earliest_lease_deadline())
                await asyncio.sleep(max(0.0, wake_at - loop.time()))
                now = loop.time()
                self._note_stall(now, now - wake_at)
                self._stop_runs_past_lease_deadline(now)
                if now < next_beat:
                    continue
                next_beat += interval_seconds
                if next_beat <= now:  # fell behind (a stalled loop): no burst of beats
                    next_beat = now + interval_seconds
                if beat is None or beat.done():
                    beat = asyncio.create_task(self.heartbeat(), name="jobsched-heartbeat-beat")
                else:
                    logger.warning("the previous heartbeat is still under way; skipping one")
        finally:
            if beat is not None:
                await _cancel_and_wait(beat)

    def _note_stall(self, now: float, overslept_seconds: float) -> None:
        """Remember (and say) when this process did not run for longer than a heartbeat.

        A process stopped (SIGSTOP, a paused container, a suspended VM) or starved of
        CPU wakes up with leases that expired meanwhile; the runs it then stops were
        lost to the freeze, not to the database.
        """
        if overslept_seconds <= self._settings.heartbeat_interval_seconds:
            return
        self._last_stall = (now, overslept_seconds)
        logger.warning(
            "this worker did not run for %.1fs (process stopped, paused or starved of "
            "CPU); leases it held may have expired meanwhile",
            overslept_seconds,
        )

    def _froze_recently(self, now: float) -> float | None:
        """How long the last stall lasted, if it was within a lease's length of ``now``."""
        if self._last_stall is None:
            return None
        at, seconds = self._last_stall
        return seconds if now - at <= self._settings.lease_seconds else None

    async def heartbeat(self) -> None:
        """One heartbeat: renew the leases and note in the worker registry that we live."""
        leases_renewed, registry_updated = await asyncio.gather(
            self.renew_leases(), self._presence.heartbeat(self.in_flight_count)
        )
        if leases_renewed and registry_updated:
            WORKER_HEARTBEATS.labels(outcome="ok").inc()
            WORKER_LAST_HEARTBEAT.set_to_current_time()
        else:
            WORKER_HEARTBEATS.labels(outcome="failed").inc()

    async def renew_leases(self) -> bool:
        """Renew every held lease in one call; stop the runs whose lease was not renewed.

        The call carries the progress reports not stored yet, so that the API shows a
        running attempt's progress as of the last heartbeat. A report counts as stored
        once a renewal of its lease succeeded; after a failed one it is sent again.
        Returns whether the renewal reached the database (True with nothing to renew).
        """
        held = list(self._in_flight.values())
        if not held:
            return True
        unstored = _unstored_progress(held)
        asked_at = asyncio.get_running_loop().time()
        try:
            renewed = await asyncio.wait_for(
                self._storage.renew_leases(
                    self.worker_id,
                    [entry.key for entry in held],
                    self._settings.lease_seconds,
                    progress={key: report for key, (_, report) in unstored.items()},
                ),
                timeout=self._settings.lease_seconds,
            )
        except Exception as error:  # try again at the next beat; the deadlines still hold
            _log_outage(
                f"renew {len(held)} leases", error, self._settings.heartbeat_interval_seconds
            )
            return False
        dropped = []
        for entry in held:
            if entry.run.id in renewed:
                entry.lease_confirmed_at = max(entry.lease_confirmed_at, asked_at)
                if entry.key in unstored:
                    entry.context.state.progress_stored(unstored[entry.key][0])
            elif self._in_flight.get(entry.key) is entry and entry.stoppable:
                dropped.append(entry)
        if dropped:
            reasons = await self._why_dropped(dropped)
            for entry, reason in zip(dropped, reasons, strict=True):
                self._stop_without_outcome(entry, reason)
        return True

    async def _why_dropped(self, dropped: list[InFlight]) -> list[StopReason]:
        """Was each run cancelled through the API, or its lease lost (taken over, rescued)?

        Only the log line and the metric differ: the lookups get one heartbeat
        interval in all, and a run not looked up by then counts as lease lost.
        """
        lookups = asyncio.Semaphore(_DROPPED_LOOKUPS_AT_ONCE)

        async def status(run_id: uuid.UUID) -> RunStatus:
            async with lookups:
                return (await self._storage.get_run(run_id)).status

        tasks = [asyncio.ensure_future(status(entry.run.id)) for entry in dropped]
        await asyncio.wait(tasks, timeout=self._settings.heartbeat_interval_seconds)
        reasons = []
        for task in tasks:
            task.cancel()
            cancelled = (
                task.done()
                and not task.cancelled()
                and task.exception() is None
                and task.result() is RunStatus.CANCELLED
            )
            reasons.append(StopReason.CANCELLED if cancelled else StopReason.LEASE_LOST)
        return reasons

    def _lease_deadline(self, entry: InFlight) -> float:
        """When to stop a run whose lease was not renewed since: a heartbeat before it ends."""
        return (
            entry.lease_confirmed_at
            + self._settings.lease_seconds
            - self._settings.heartbeat_interval_seconds
        )

    def _earliest_lease_deadline(self) -> float:
        deadlines = [
            self._lease_deadline(entry) for entry in self._in_flight.values() if entry.stoppable
        ]
        return min(deadlines, default=math.inf)

    def _stop_runs_past_lease_deadline(self, now: float) -> None:
        for entry in list(self._in_flight.values()):
            if entry.stoppable and now >= self._lease_deadline(entry):
                self._stop_without_outcome(entry, StopReason.LEASE_EXPIRING)

    def _stop_without_outcome(self, entry: InFlight, reason: StopReason) -> None:
        """Stop the run's handler, write no outcome, and ack its delivery once it stopped."""
        if not entry.stop(reason):
            return
        run = entry.run
        if reason is StopReason.CANCELLED:
            logger.info(
                "run %s attempt %d: cancelled; its handler was stopped", run.id, run.attempt
            )
            JOBS_CANCELLED.labels(type=run.job_type, queue=run.queue).inc()
        elif reason is StopReason.LEASE_LOST:
            logger.warning(
                "run %s attempt %d: lease lost (taken over or rescued); abandoning it",
                run.id,
                run.attempt,
            )
            OUTCOMES_REFUSED.inc()
            _count_abandoned(run, reason)
        else:
            now = asyncio.get_running_loop().time()
            frozen_seconds = self._froze_recently(now)
            cause = (
                f"this worker was frozen for {frozen_seconds:.1f}s"
                if frozen_seconds is not None
                else "renewals did not reach the database"
            )
            logger.warning(
                "run %s attempt %d: lease not renewed for %.1fs (%s); stopped without an "
                "outcome: it is retried once the lease expires",
                run.id,
                run.attempt,
                now - entry.lease_confirmed_at,
                cause,
            )
            _count_abandoned(run, reason)
        self._in_background(self._ack_when_stopped(entry), name=f"jobsched-stopped-{run.id}")

    async def _ack_when_stopped(self, entry: InFlight) -> None:
        # The run is cancelled, or goes back through the outbox (rescued): this
        # worker's delivery of it is spent.
        await asyncio.wait({entry.task})
        await self._acks.submit(entry.run)


@contextlib.contextmanager
def _gil_switch_interval(seconds: float | None) -> Iterator[None]:
    """Lower CPython's thread switch interval to ``seconds`` while the worker runs.

    Never raised (a lower one set by someone else stays); restored on the way out
    unless someone changed it meanwhile.
    """
    previous = sys.getswitchinterval()
    if seconds is None or seconds >= previous:
        yield
        return
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        if sys.getswitchinterval() == seconds:
            sys.setswitchinterval(previous)


def _unstored_progress(
    entries: list[InFlight],
) -> dict[tuple[uuid.UUID, int], tuple[int, JsonObject]]:
    """Per run, its handler's latest progress report and that report's version, if unstored."""
    unstored = {}
    for entry in entries:
        report = entry.context.state.unstored_progress()
        if report is not None:
            unstored[entry.key] = report
    return unstored


async def _wait_for_handlers_to_end(entries: list[InFlight], timeout_seconds: float) -> None:
    """Wait (bounded) until every entry's handler code has stopped running.

    Polled: a thread handler signals its end with a ``threading.Event``.
    """
    deadline = time.monotonic() + timeout_seconds
    while any(not entry.context.state.handler_ended.is_set() for entry in entries):
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(_HANDLER_END_POLL_SECONDS)


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _log_outage(action: str, error: Exception, retry_in_seconds: float) -> None:
    if isinstance(error, StorageError | QueueError | TimeoutError):
        detail = str(error) or type(error).__name__
        logger.warning("cannot %s: %s; trying again in %.1fs", action, detail, retry_in_seconds)
    else:
        logger.error("cannot %s; trying again in %.1fs", action, retry_in_seconds, exc_info=error)


def _count_abandoned(run: Run, reason: StopReason) -> None:
    JOBS_ABANDONED.labels(type=run.job_type, queue=run.queue, reason=reason.value).inc()


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


class _RunMetrics(NamedTuple):
    """The metrics every run of one type and queue touches, labelled once."""

    started: Counter
    in_progress: Gauge
    completed: Counter


@functools.lru_cache(maxsize=1024)
def _run_metrics(job_type: str, queue: str) -> _RunMetrics:
    # ``labels()`` validates its arguments and looks the child up under a lock: a
    # noticeable share of a short run's cost when called four times per run.
    return _RunMetrics(
        JOBS_STARTED.labels(type=job_type, queue=queue),
        RUNS_IN_PROGRESS.labels(type=job_type, queue=queue),
        JOBS_COMPLETED.labels(type=job_type, queue=queue),
    )


@functools.lru_cache(maxsize=4096)
def _duration(job_type: str, queue: str, outcome: AttemptStatus) -> Histogram:
    return JOB_DURATION.labels(type=job_type, queue=queue, outcome=outcome.value)


def _count_outcome(run: Run, outcome: AttemptOutcome) -> None:
    if outcome.run_status is RunStatus.SUCCEEDED:
        _run_metrics(run.job_type, run.queue).completed.inc()
        return
    labels = {"type": run.job_type, "queue": run.queue}
    JOBS_FAILED.labels(**labels).inc()
    if outcome.attempt_status is AttemptStatus.TIMED_OUT:
        JOBS_TIMED_OUT.labels(**labels).inc()
    if outcome.run_status is RunStatus.RETRYING:
        JOBS_RETRIED.labels(**labels).inc()
    else:
        JOBS_DEAD.labels(**labels).inc()
