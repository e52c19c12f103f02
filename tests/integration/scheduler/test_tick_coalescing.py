"""Fire times close together share a tick; a backlog is fired without pausing."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from jobsched.config.settings import SchedulerSettings
from jobsched.core.models import JobSpec
from jobsched.queue.database import DatabaseQueue
from jobsched.scheduler.service import Scheduler
from jobsched.storage.database import SQLStorage
from tests.helpers import wait_until


class CountingScheduler(Scheduler):
    """The real scheduler, noting how many runs each tick created."""

    fired_per_tick: list[int]

    async def tick(self) -> int:
        fired = await super().tick()
        self.fired_per_tick.append(fired)
        return fired


def counting_scheduler(storage: SQLStorage, settings: SchedulerSettings) -> CountingScheduler:
    scheduler = CountingScheduler(storage, DatabaseQueue(storage), settings)
    scheduler.fired_per_tick = []
    return scheduler


async def create_jobs_due(storage: SQLStorage, offsets_seconds: list[float]) -> None:
    now = await storage.now()
    for offset in offsets_seconds:
        due = now + timedelta(seconds=offset)
        await storage.create_job(JobSpec(type="noop", payload={}), next_run_at=due, now=now)


async def run_until_fired(scheduler: CountingScheduler, count: int) -> float:
    """Run ``scheduler`` until ``count`` runs were fired; the seconds that took."""
    started = time.monotonic()
    running = asyncio.create_task(scheduler.run())
    try:
        await wait_until(lambda: sum(scheduler.fired_per_tick) >= count, timeout_seconds=20)
        return time.monotonic() - started
    finally:
        scheduler.request_stop()
        await running


async def test_fire_times_within_the_minimum_interval_share_a_tick(storage: SQLStorage) -> None:
    # Ten fire times 20 ms apart, starting in a second: 180 ms from first to last.
    await create_jobs_due(storage, [1.0 + index * 0.02 for index in range(10)])
    scheduler = counting_scheduler(
        storage, SchedulerSettings(min_tick_interval_seconds=0.5, max_sleep_seconds=5)
    )

    await run_until_fired(scheduler, 10)

    firing_ticks = [fired for fired in scheduler.fired_per_tick if fired]
    assert sum(firing_ticks) == 10
    assert len(firing_ticks) <= 2  # one tick per fire time would be ten


async def test_without_a_minimum_interval_each_fire_time_gets_its_tick(
    storage: SQLStorage,
) -> None:
    await create_jobs_due(storage, [1.0 + index * 0.2 for index in range(4)])
    scheduler = counting_scheduler(
        storage, SchedulerSettings(min_tick_interval_seconds=0, max_sleep_seconds=5)
    )

    await run_until_fired(scheduler, 4)

    assert [fired for fired in scheduler.fired_per_tick if fired] == [1, 1, 1, 1]


async def test_a_backlog_is_fired_batch_after_batch_without_the_pause(
    storage: SQLStorage,
) -> None:
    await create_jobs_due(storage, [-1.0] * 12)  # all overdue
    scheduler = counting_scheduler(
        storage, SchedulerSettings(batch_size=3, min_tick_interval_seconds=1, max_sleep_seconds=5)
    )

    seconds = await run_until_fired(scheduler, 12)

    assert scheduler.fired_per_tick[:4] == [3, 3, 3, 3]
    assert seconds < 2.5  # four batches: three 1 s pauses between them would take 3 s
