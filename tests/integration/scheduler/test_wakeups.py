"""LISTEN/NOTIFY wake-ups on PostgreSQL: a sleeping scheduler and an idle worker react at once.

Both sleep for 30 s here, so only a notification can explain a reaction within
a few seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from jobsched.config.settings import SchedulerSettings
from jobsched.core.models import JobSpec, RunStatus
from jobsched.queue.database import DatabaseQueue
from jobsched.scheduler.service import Scheduler
from jobsched.storage.database import SQLStorage
from jobsched.storage.notifications import JOBS_CHANNEL, RUNS_CHANNEL, NotificationListener
from jobsched.storage.urls import parse_database_url
from tests.helpers import wait_until

LONG_SLEEP_SECONDS = 30.0


@pytest.fixture
async def postgres_storage(postgres_url: str) -> AsyncIterator[SQLStorage]:
    storage = SQLStorage.from_url(postgres_url)
    yield storage
    await storage.close()


async def test_scheduler_wakes_for_a_new_due_job(
    postgres_url: str, postgres_storage: SQLStorage
) -> None:
    queue = DatabaseQueue(postgres_storage)
    scheduler = Scheduler(
        postgres_storage, queue, SchedulerSettings(max_sleep_seconds=LONG_SLEEP_SECONDS)
    )
    listener = NotificationListener(
        parse_database_url(postgres_url),
        [JOBS_CHANNEL],
        lambda _channel, payload: scheduler.on_jobs_changed(payload),
    )
    listener.start()
    running = asyncio.create_task(scheduler.run())
    try:
        await asyncio.wait_for(listener.listening.wait(), timeout=10)
        await wait_until(
            lambda: scheduler._wake_deadline_epoch > time.time() + LONG_SLEEP_SECONDS / 2,
            message="the scheduler asleep with nothing to do",
        )
        other_process = SQLStorage.from_url(postgres_url)
        try:
            now = await other_process.now()
            job = await other_process.create_job(
                JobSpec(type="noop", payload={}), next_run_at=now, now=now
            )
        finally:
            await other_process.close()
        started = time.monotonic()

        async def fired() -> bool:
            page = await postgres_storage.list_runs(
                job_id=job.id, status=None, limit=1, cursor=None
            )
            return bool(page.items)

        await wait_until(fired, timeout_seconds=5, message="the new job fired")
        assert time.monotonic() - started < 5
    finally:
        scheduler.request_stop()
        await running
        await listener.close()


async def test_scheduler_ignores_notifications_about_later_jobs(
    postgres_storage: SQLStorage,
) -> None:
    scheduler = Scheduler(
        postgres_storage,
        DatabaseQueue(postgres_storage),
        SchedulerSettings(max_sleep_seconds=LONG_SLEEP_SECONDS),
    )
    scheduler._wake_deadline_epoch = time.time() + 10
    scheduler.on_jobs_changed(str(time.time() + 60))
    assert not scheduler._woken.is_set()
    scheduler.on_jobs_changed(str(time.time() + 1))
    assert scheduler._woken.is_set()


async def test_idle_database_queue_worker_wakes_for_a_ready_run(
    postgres_url: str, postgres_storage: SQLStorage
) -> None:
    queue = DatabaseQueue(postgres_storage)
    listener = NotificationListener(
        parse_database_url(postgres_url),
        [RUNS_CHANNEL],
        lambda _channel, payload: queue.on_runs_ready(payload),
    )
    listener.start()
    try:
        await asyncio.wait_for(listener.listening.wait(), timeout=10)
        claim = asyncio.create_task(
            queue.claim("w1", ["default"], 10, 30, wait_seconds=LONG_SLEEP_SECONDS)
        )
        # The claimer found nothing and waits: it cleared the wake-up event.
        queue._published.set()
        await wait_until(lambda: not queue._published.is_set(), message="claimer waiting")
        await asyncio.sleep(0.1)  # its first, empty claim query has returned
        now = await postgres_storage.now()
        job = await postgres_storage.create_job(
            JobSpec(type="noop", payload={}), next_run_at=now + timedelta(days=1), now=now
        )
        started = time.monotonic()
        await postgres_storage.trigger_job(job.id, published=True)
        claimed = await asyncio.wait_for(claim, timeout=5)
        assert [run.status for run in claimed] == [RunStatus.RUNNING]
        assert time.monotonic() - started < 5
    finally:
        await listener.close()
