"""Storage contract: the scheduler's side — firing due jobs, the outbox, queue depth."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from jobsched.core.models import Job, JobStatus, RunStatus, RunTrigger
from jobsched.core.planning import FirePlan
from jobsched.storage.base import Storage
from jobsched.storage.schema import runs
from tests.contract.storage_scenario import EPOCH, StorageScenario, fire_at, fire_once

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)  # one step of fire_once takes any job here past EPOCH


async def test_only_due_active_jobs_fire(storage: Storage, scenario: StorageScenario) -> None:
    due = await scenario.job(next_run_at=EPOCH - HOUR)
    due_now = await scenario.job(next_run_at=EPOCH)
    await scenario.job(next_run_at=EPOCH + timedelta(microseconds=1))
    paused = await scenario.job(next_run_at=EPOCH - HOUR)
    await storage.update_job(paused.id, lambda job: _with_status(job, JobStatus.PAUSED))
    await scenario.job(next_run_at=None)  # completed
    planned: list[Job] = []

    def plan(job: Job) -> FirePlan:
        planned.append(job)
        return fire_once(DAY)(job)

    fired = await storage.fire_due_jobs(EPOCH, 100, plan, published=False)

    assert sorted(run.job_id for run in fired) == sorted([due.id, due_now.id])
    assert sorted(job.id for job in planned) == sorted([due.id, due_now.id])
    assert planned[0] == due  # the plan sees the job as stored
    assert scenario.count_runs() == 2
    assert (await storage.get_job(paused.id)).next_run_at == EPOCH - HOUR


def _with_status(job: Job, status: JobStatus) -> Job:
    return replace(job, status=status)


async def test_the_plan_decides_the_runs_and_the_next_fire_time(
    storage: Storage, scenario: StorageScenario
) -> None:
    job = await scenario.job(
        next_run_at=EPOCH - HOUR, type="http", queue="reports", priority=3, payload={"p": 1}
    )
    times = [EPOCH - HOUR, EPOCH - timedelta(minutes=30), EPOCH]

    fired = await storage.fire_due_jobs(EPOCH, 10, fire_at(times, EPOCH + HOUR), published=False)

    assert sorted(run.scheduled_for for run in fired) == times
    for run in fired:
        assert run.trigger == RunTrigger.SCHEDULE
        assert (run.status, run.attempt) == (RunStatus.QUEUED, 0)
        assert run.not_before == run.scheduled_for
        assert (run.job_id, run.job_type, run.queue, run.priority) == (job.id, "http", "reports", 3)
        assert (run.payload, run.retry, run.timeout_seconds) == (
            {"p": 1},
            job.retry,
            job.timeout_seconds,
        )
        assert run.published_at is None
        assert await storage.get_run(run.id) == run
    advanced = await storage.get_job(job.id)
    assert advanced.next_run_at == EPOCH + HOUR
    assert advanced.status == JobStatus.ACTIVE
    assert advanced.last_fired_at == EPOCH
    assert advanced.updated_at == EPOCH


async def test_a_one_time_job_fires_once_and_becomes_completed(
    storage: Storage, scenario: StorageScenario
) -> None:
    job = await scenario.job(next_run_at=EPOCH - HOUR, run_at=EPOCH - HOUR)

    fired = await storage.fire_due_jobs(EPOCH, 10, fire_once(None), published=True)
    again = await storage.fire_due_jobs(EPOCH + HOUR, 10, fire_once(None), published=True)

    assert [run.scheduled_for for run in fired] == [EPOCH - HOUR]
    assert again == []
    completed = await storage.get_job(job.id)
    assert (completed.status, completed.next_run_at) == (JobStatus.COMPLETED, None)


async def test_a_second_call_at_the_same_now_fires_nothing(
    storage: Storage, scenario: StorageScenario
) -> None:
    for _ in range(3):
        await scenario.job(next_run_at=EPOCH - HOUR)

    first = await storage.fire_due_jobs(EPOCH, 10, fire_once(DAY), published=True)
    second = await storage.fire_due_jobs(EPOCH, 10, fire_once(DAY), published=True)

    assert len(first) == 3
    assert second == []
    assert scenario.count_runs() == 3


async def test_limit_takes_the_longest_overdue_first(
    storage: Storage, scenario: StorageScenario
) -> None:
    late = [await scenario.job(next_run_at=EPOCH - timedelta(minutes=m)) for m in (1, 30, 5, 60)]

    fired = await storage.fire_due_jobs(EPOCH, 2, fire_once(DAY), published=True)

    assert sorted(run.job_id for run in fired) == sorted([late[3].id, late[1].id])
    assert len(await storage.fire_due_jobs(EPOCH, 2, fire_once(DAY), published=True)) == 2
    assert await storage.fire_due_jobs(EPOCH, 2, fire_once(DAY), published=True) == []


async def test_a_fire_time_that_already_has_a_run_inserts_nothing_for_it(
    storage: Storage, scenario: StorageScenario
) -> None:
    job = await scenario.job(next_run_at=EPOCH - HOUR)
    earlier = EPOCH - HOUR
    # Leave the job due, as a replica that fired and died before advancing it might.
    await storage.fire_due_jobs(EPOCH, 10, fire_at([earlier], EPOCH - HOUR), published=True)

    fired = await storage.fire_due_jobs(EPOCH, 10, fire_at([earlier, EPOCH], None), published=True)

    assert [run.scheduled_for for run in fired] == [EPOCH]
    assert scenario.count_runs(job.id) == 2
    assert scenario.count(runs, runs.c.scheduled_for == earlier) == 1
    assert (await storage.get_job(job.id)).status == JobStatus.COMPLETED


async def test_a_manual_run_does_not_take_the_place_of_a_fire_time(
    storage: Storage, scenario: StorageScenario
) -> None:
    job = await scenario.job(next_run_at=EPOCH - HOUR)
    manual = await storage.trigger_job(job.id, published=True)

    fired = await storage.fire_due_jobs(
        EPOCH, 10, fire_at([manual.scheduled_for], None), published=True
    )

    assert [(run.scheduled_for, run.trigger) for run in fired] == [
        (manual.scheduled_for, RunTrigger.SCHEDULE)
    ]
    assert scenario.count_runs(job.id) == 2


async def test_a_plan_without_fire_times_only_advances_the_job(
    storage: Storage, scenario: StorageScenario
) -> None:
    job = await scenario.job(next_run_at=EPOCH - HOUR)

    fired = await storage.fire_due_jobs(EPOCH, 10, fire_at([], EPOCH + HOUR), published=True)

    assert fired == []
    assert scenario.count_runs() == 0
    advanced = await storage.get_job(job.id)
    assert (advanced.next_run_at, advanced.last_fired_at) == (EPOCH + HOUR, None)


async def test_published_runs_carry_published_at(
    storage: Storage, scenario: StorageScenario
) -> None:
    await scenario.job(next_run_at=EPOCH - HOUR)

    (run,) = await storage.fire_due_jobs(EPOCH, 10, fire_once(DAY), published=True)

    assert run.published_at == EPOCH
    assert (await storage.get_run(run.id)).published_at == EPOCH


async def test_nothing_due_fires_nothing(storage: Storage, scenario: StorageScenario) -> None:
    job = await scenario.job(next_run_at=EPOCH + HOUR)

    assert await storage.fire_due_jobs(EPOCH, 10, fire_once(DAY), published=True) == []
    assert await storage.get_job(job.id) == job


# --- the outbox ------------------------------------------------------------------------


async def test_mark_published_sets_published_at_once(
    storage: Storage, scenario: StorageScenario
) -> None:
    first, second, third = [await scenario.ready_run(published=False) for _ in range(3)]
    before = await storage.now()

    await storage.mark_published([first.id, second.id])
    marked_at = (await storage.get_run(first.id)).published_at
    await storage.mark_published([first.id])
    await storage.mark_published([])

    assert marked_at is not None
    assert marked_at >= before - timedelta(seconds=1)
    assert (await storage.get_run(first.id)).published_at == marked_at
    assert (await storage.get_run(second.id)).published_at is not None
    assert (await storage.get_run(third.id)).published_at is None


# --- queue depth and the next wake-up --------------------------------------------------


async def test_ready_run_counts_count_queued_and_retrying_runs_per_queue(
    storage: Storage, scenario: StorageScenario
) -> None:
    for queue in ("default", "default", "emails"):
        await scenario.ready_run(queue=queue)
    await scenario.claimed_run(queue="default")
    await scenario.claimed_run(queue="reports")
    retried = await scenario.claimed_run(queue="emails", worker_id="worker-9")
    scenario.expire_leases([retried.id])
    await storage.rescue_expired_leases(10)

    assert await storage.ready_run_counts() == {"default": 2, "emails": 2}


async def test_earliest_next_run_at_of_active_jobs(
    storage: Storage, scenario: StorageScenario
) -> None:
    assert await storage.earliest_next_run_at() is None
    assert await storage.ready_run_counts() == {}
    paused = await scenario.job(next_run_at=EPOCH - HOUR)
    await storage.update_job(paused.id, lambda job: _with_status(job, JobStatus.PAUSED))
    await scenario.job(next_run_at=None)
    await scenario.job(next_run_at=EPOCH + HOUR)
    await scenario.job(next_run_at=EPOCH + timedelta(minutes=5, microseconds=7))

    earliest = await storage.earliest_next_run_at()

    assert earliest == EPOCH + timedelta(minutes=5, microseconds=7)
    assert isinstance(earliest, datetime)
    assert earliest.utcoffset() == timedelta(0)


async def test_fired_runs_are_ready_when_due(storage: Storage, scenario: StorageScenario) -> None:
    now = await storage.now()
    await scenario.job(next_run_at=now - HOUR, queue="q")

    (run,) = await storage.fire_due_jobs(now, 10, fire_once(DAY), published=False)

    assert await storage.ready_run_counts() == {"q": 1}
    (claimed,) = await storage.claim_ready_runs(["q"], 10, "worker-1", 30.0)
    assert claimed.id == run.id
