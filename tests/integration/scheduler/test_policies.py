"""Misfire and concurrency policies through a real scheduler tick, on SQLite and PostgreSQL.

"The scheduler was stopped for five minutes" is the state a stopped scheduler
leaves behind: an every-10-seconds job whose ``next_run_at`` is five minutes old.
Fire times sit 5 s off the grace boundaries so the few milliseconds a tick takes
cannot move one across.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from jobsched.config.settings import SchedulerSettings
from jobsched.core.models import (
    AttemptStatus,
    ConcurrencyPolicy,
    Job,
    JobSpec,
    MisfirePolicy,
    Run,
    RunStatus,
)
from jobsched.queue.database import DatabaseQueue
from jobsched.scheduler.service import Scheduler
from jobsched.storage.base import AttemptOutcome
from jobsched.storage.database import SQLStorage

DOWNTIME = timedelta(seconds=300)
GRACE_SECONDS = 20.0


def _scheduler(storage: SQLStorage, **settings: float) -> Scheduler:
    values = {"misfire_grace_seconds": GRACE_SECONDS, **settings}
    return Scheduler(storage, DatabaseQueue(storage), SchedulerSettings.model_validate(values))


async def _job_left_by_a_stopped_scheduler(
    storage: SQLStorage, **spec_fields: object
) -> tuple[Job, datetime]:
    """An @every 10s job that last fired just before a 5-minute outage."""
    now = await storage.now()
    anchor = now - DOWNTIME - timedelta(seconds=5)  # grid points at now - 295 s, ..., now - 5 s
    spec = JobSpec(type="noop", payload={}, schedule="@every 10s", **spec_fields)  # type: ignore[arg-type]
    job = await storage.create_job(spec, next_run_at=anchor + timedelta(seconds=10), now=anchor)
    return job, now


async def _runs_of(storage: SQLStorage, job: Job) -> list[Run]:
    page = await storage.list_runs(job_id=job.id, status=None, limit=500, cursor=None)
    return sorted(page.items, key=lambda run: run.scheduled_for)


@pytest.mark.parametrize(
    ("policy", "expected_runs"),
    [
        (MisfirePolicy.COALESCE, 1 + 2),  # one for the 28 missed, then the 2 within the grace
        (MisfirePolicy.ALL, 28 + 2),
        (MisfirePolicy.SKIP, 2),
    ],
)
async def test_misfire_policy_after_downtime(
    storage: SQLStorage, policy: MisfirePolicy, expected_runs: int
) -> None:
    job, now = await _job_left_by_a_stopped_scheduler(storage, misfire_policy=policy)
    first_missed = job.next_run_at
    assert first_missed is not None

    await _scheduler(storage).tick()

    fired = await _runs_of(storage, job)
    assert len(fired) == expected_runs
    assert [run.scheduled_for for run in fired[-2:]] == [
        now - timedelta(seconds=15),
        now - timedelta(seconds=5),
    ]
    if policy is not MisfirePolicy.SKIP:
        assert fired[0].scheduled_for == first_missed
    assert all(run.status is RunStatus.QUEUED for run in fired)
    after = await storage.get_job(job.id)
    assert after.next_run_at == now + timedelta(seconds=5)
    # The outage is over: the next tick creates nothing more until the next fire time.
    await _scheduler(storage).tick()
    assert len(await _runs_of(storage, job)) == expected_runs


async def test_misfire_all_is_capped(storage: SQLStorage) -> None:
    job, _ = await _job_left_by_a_stopped_scheduler(storage, misfire_policy=MisfirePolicy.ALL)

    await _scheduler(storage, misfire_max_catch_up_runs=5).tick()

    assert len(await _runs_of(storage, job)) == 5 + 2


async def test_a_job_grace_of_its_own_overrides_the_scheduler_default(storage: SQLStorage) -> None:
    job, _ = await _job_left_by_a_stopped_scheduler(
        storage, misfire_policy=MisfirePolicy.SKIP, misfire_grace_seconds=100.0
    )

    await _scheduler(storage).tick()

    # Grid points at now - 95, -85, ..., -5 s are within its 100 s grace.
    assert len(await _runs_of(storage, job)) == 10


async def _make_due_again(storage: SQLStorage, job: Job) -> None:
    now = await storage.now()
    await storage.update_job(job.id, lambda current: dataclasses.replace(current, next_run_at=now))


async def _due_job(storage: SQLStorage, policy: ConcurrencyPolicy) -> Job:
    now = await storage.now()
    spec = JobSpec(type="noop", payload={}, schedule="@every 1h", concurrency_policy=policy)
    return await storage.create_job(spec, next_run_at=now - timedelta(seconds=1), now=now)


async def test_concurrency_allow_runs_alongside(storage: SQLStorage) -> None:
    job = await _due_job(storage, ConcurrencyPolicy.ALLOW)
    await _scheduler(storage).tick()
    await _make_due_again(storage, job)
    await _scheduler(storage).tick()

    assert [run.status for run in await _runs_of(storage, job)] == [RunStatus.QUEUED] * 2


async def test_concurrency_forbid_records_a_skip_while_a_run_is_active(
    storage: SQLStorage,
) -> None:
    job = await _due_job(storage, ConcurrencyPolicy.FORBID)
    await _scheduler(storage).tick()
    (first,) = await _runs_of(storage, job)
    await storage.claim_ready_runs(["default"], 10, "worker-a", 30)

    await _make_due_again(storage, job)
    await _scheduler(storage).tick()

    first_now, skipped = await _runs_of(storage, job)
    assert first_now.status is RunStatus.RUNNING
    assert skipped.status is RunStatus.SKIPPED
    assert skipped.finished_at is not None
    assert skipped.last_error is not None
    assert str(first.id) in skipped.last_error
    assert "forbid" in skipped.last_error

    # Once the earlier run is over, the job fires normally again.
    await storage.finish_attempts(
        [AttemptOutcome(first.id, 1, "worker-a", AttemptStatus.SUCCEEDED, RunStatus.SUCCEEDED)]
    )
    await _make_due_again(storage, job)
    await _scheduler(storage).tick()
    assert [run.status for run in await _runs_of(storage, job)] == [
        RunStatus.SUCCEEDED,
        RunStatus.SKIPPED,
        RunStatus.QUEUED,
    ]


async def test_concurrency_replace_cancels_the_running_run(storage: SQLStorage) -> None:
    job = await _due_job(storage, ConcurrencyPolicy.REPLACE)
    await _scheduler(storage).tick()
    (claimed,) = await storage.claim_ready_runs(["default"], 10, "worker-a", 30)

    await _make_due_again(storage, job)
    await _scheduler(storage).tick()

    replaced, newer = await _runs_of(storage, job)
    assert replaced.id == claimed.id
    assert replaced.status is RunStatus.CANCELLED
    assert replaced.last_error is not None
    assert "replace" in replaced.last_error
    assert newer.status is RunStatus.QUEUED
    (attempt,) = await storage.list_attempts(replaced.id)
    assert attempt.status is AttemptStatus.CANCELLED
    # The worker still running it loses its lease and cannot record an outcome.
    assert await storage.renew_leases("worker-a", [(claimed.id, 1)], 30) == set()
    assert await storage.finish_attempts(
        [AttemptOutcome(claimed.id, 1, "worker-a", AttemptStatus.SUCCEEDED, RunStatus.SUCCEEDED)]
    ) == [False]
