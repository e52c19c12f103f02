"""The scheduler service: turns due fire times into runs and puts them on the queue.

Each tick reads the database clock, fires up to ``batch_size`` due jobs in one
transaction (``Storage.fire_due_jobs``: claim with SKIP LOCKED, insert runs,
advance ``next_run_at``) and publishes what it created. Between ticks it sleeps
until the earliest ``next_run_at``, at most ``max_sleep_seconds`` (so jobs
created meanwhile are seen), or until ``wake()``. Housekeeping rescues runs whose
worker lease expired.

With a broker queue, publishing goes through the transactional outbox: runs are
committed unpublished and ``Storage.publish_pending`` hands them to the broker and
marks them published only once it took them. The same sweep, repeated every
``outbox_interval_seconds``, publishes retries whose delay has passed and runs
rescued from dead workers, and republishes everything still waiting when the
broker reports it lost its messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from jobsched.config.settings import RetentionSettings, SchedulerSettings
from jobsched.core.errors import JobschedError
from jobsched.core.models import Job, Run, RunStatus
from jobsched.core.planning import FirePlan, plan_due_job
from jobsched.monitoring import metrics
from jobsched.queue.base import RunQueue
from jobsched.scheduler.housekeeping import Housekeeper
from jobsched.storage.base import Storage
from jobsched.storage.leadership import Leadership

logger = logging.getLogger("jobsched.scheduler")

_ERROR_BACKOFF_MAX_SECONDS = 5.0
# Fault injection for the outbox test: exit right after committing runs, before
# publishing them. Only the test suite sets it.
CRASH_BEFORE_PUBLISH_VARIABLE = "JOBSCHED_TEST_CRASH_BEFORE_PUBLISH"
CRASH_BEFORE_PUBLISH_EXIT_CODE = 86
_LOSS_CHECK_INTERVAL_SECONDS = 1.0


class Scheduler:
    def __init__(
        self,
        storage: Storage,
        queue: RunQueue,
        settings: SchedulerSettings,
        *,
        retention: RetentionSettings | None = None,
        leadership: Leadership | None = None,
    ) -> None:
        self._storage = storage
        self._queue = queue
        self._settings = settings
        self._housekeeper = Housekeeper(
            storage, queue, settings, retention or RetentionSettings(), leadership
        )
        self._misfire_limits = settings.misfire_limits()
        self._stopping = asyncio.Event()
        self._woken = asyncio.Event()
        self._next_loss_check_monotonic = 0.0
        self._broker_lost_messages = False
        # Epoch seconds of the planned wake-up; NOTIFYs about later times are ignored.
        self._wake_deadline_epoch = 0.0
        self._notified_earliest_epoch = math.inf
        self._tick_now = datetime.now(UTC)
        self._tick_monotonic = time.monotonic()

    def wake(self) -> None:
        """Tick now: a job was created, changed or triggered."""
        self._woken.set()

    def on_jobs_changed(self, earliest_next_run_epoch: str) -> None:
        """A NOTIFY from the jobs table: wake if a job is due before the planned wake-up.

        The payload is the earliest ``next_run_at`` written (epoch seconds), or empty
        when unknown (the listener reconnected), which always wakes.
        """
        try:
            earliest = float(earliest_next_run_epoch)
        except ValueError:
            earliest = -math.inf
        # Remembered for the sleep that follows a tick: a NOTIFY arriving mid-tick is
        # judged against the deadline that sleep computes (this replica's own writes
        # always name times at or after it, so they never wake it).
        self._notified_earliest_epoch = min(self._notified_earliest_epoch, earliest)
        if earliest < self._wake_deadline_epoch:
            self._woken.set()

    def request_stop(self) -> None:
        self._stopping.set()
        self._woken.set()

    async def run(self) -> None:
        """Tick until ``request_stop``; database and queue outages are logged and retried."""
        logger.info("scheduler started")
        if self._queue.commits_are_publishes:
            await self._fire_loop()
        else:
            outbox = asyncio.create_task(self._outbox_loop())
            try:
                await self._fire_loop()
            finally:
                outbox.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await outbox
        await self._housekeeper.close()
        logger.info("scheduler stopped")

    async def _fire_loop(self) -> None:
        error_backoff_seconds = 0.1
        while not self._stopping.is_set():
            # Reset before the tick reads the database: a change committed while the
            # tick runs is remembered (on_jobs_changed) and judged by the next sleep.
            self._woken.clear()
            self._wake_deadline_epoch = -math.inf
            self._notified_earliest_epoch = math.inf
            tick_started = time.monotonic()
            try:
                fired = await self.tick()
                await self._housekeeper.run_due_duties()
                if fired >= self._settings.batch_size:
                    pause_seconds = 0.0  # a backlog: fire the next batch at once
                else:
                    pause_seconds = max(
                        await self._seconds_until_next_fire(),
                        tick_started + self._settings.min_tick_interval_seconds - time.monotonic(),
                    )
                error_backoff_seconds = 0.1
            except JobschedError as error:
                logger.warning("scheduler tick failed, retrying: %s", error)
                pause_seconds = error_backoff_seconds
                error_backoff_seconds = min(error_backoff_seconds * 2, _ERROR_BACKOFF_MAX_SECONDS)
            if pause_seconds > 0:
                await self._sleep(pause_seconds)

    async def _outbox_loop(self) -> None:
        error_backoff_seconds = 0.1
        while not self._stopping.is_set():
            try:
                await self.sweep_outbox()
                error_backoff_seconds = 0.1
                delay = self._settings.outbox_interval_seconds
            except JobschedError as error:
                logger.warning("publishing runs failed, retrying: %s", error)
                delay = error_backoff_seconds
                error_backoff_seconds = min(error_backoff_seconds * 2, _ERROR_BACKOFF_MAX_SECONDS)
            await asyncio.sleep(delay)

    async def sweep_outbox(self) -> int:
        """Publish every committed, unpublished, due run; return how many."""
        await self._recover_lost_messages()
        published = 0
        while True:
            count = await self._storage.publish_pending(
                self._settings.batch_size, self._queue.publish
            )
            published += count
            if count < self._settings.batch_size:
                return published

    async def tick(self) -> int:
        """Fire every job due now (in batches); return how many runs were created."""
        started = time.perf_counter()
        now = await self._storage.now()
        self._tick_now, self._tick_monotonic = now, time.monotonic()

        limits = self._misfire_limits

        def plan(job: Job) -> FirePlan:
            return plan_due_job(job, now, limits)

        runs = await self._storage.fire_due_jobs(
            now, self._settings.batch_size, plan, published=self._queue.commits_are_publishes
        )
        if runs:
            if os.environ.get(CRASH_BEFORE_PUBLISH_VARIABLE) == "1":
                os._exit(CRASH_BEFORE_PUBLISH_EXIT_CODE)
            if self._queue.commits_are_publishes:
                await self._queue.publish(runs)
            else:
                await self.sweep_outbox()
            self._observe(runs, now)
        metrics.SCHEDULER_TICK_SECONDS.observe(time.perf_counter() - started)
        return len(runs)

    @staticmethod
    def _observe(runs: Sequence[Run], now: datetime) -> None:
        for run in runs:
            if run.status is RunStatus.SKIPPED:
                metrics.RUNS_SKIPPED.labels(queue=run.queue).inc()
                continue
            metrics.RUNS_FIRED.labels(queue=run.queue).inc()
            lag_seconds = max((now - run.scheduled_for).total_seconds(), 0.0)
            metrics.SCHEDULER_FIRE_LAG.observe(lag_seconds)

    async def _recover_lost_messages(self) -> None:
        """Republish every waiting run if the broker lost its messages (checked ~1/s).

        The loss is remembered until the runs are marked unpublished: the broker
        reports it once, and a database error must not make us forget it.
        """
        if time.monotonic() >= self._next_loss_check_monotonic:
            self._next_loss_check_monotonic = time.monotonic() + _LOSS_CHECK_INTERVAL_SECONDS
            if await self._queue.lost_messages_since_last_check():
                self._broker_lost_messages = True
        if self._broker_lost_messages:
            lost = await self._storage.mark_waiting_unpublished()
            self._broker_lost_messages = False
            # A new namespace reads as a loss too (the broker has nothing of ours): with
            # nothing waiting there is nothing to warn about.
            logger.log(
                logging.WARNING if lost else logging.INFO,
                "the broker lost its messages (or this namespace is new); "
                "republishing %d waiting runs",
                lost,
            )

    async def _seconds_until_next_fire(self) -> float:
        earliest = await self._storage.earliest_next_run_at()
        if earliest is None:
            return self._settings.max_sleep_seconds
        # The database clock as of the tick, moved on by the time elapsed since:
        # one query fewer than asking the database again.
        now = self._tick_now + timedelta(seconds=time.monotonic() - self._tick_monotonic)
        return min(max((earliest - now).total_seconds(), 0.0), self._settings.max_sleep_seconds)

    async def _sleep(self, seconds: float) -> None:
        if self._stopping.is_set():
            return
        deadline = time.time() + seconds
        if self._notified_earliest_epoch < deadline:
            return  # a job became due sooner while we were busy
        self._wake_deadline_epoch = deadline
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), timeout=seconds)
