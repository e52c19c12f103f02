"""Storage contract: reading runs and their attempts."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from jobsched.core.errors import InvalidInputError, NotFoundError
from jobsched.core.models import AttemptStatus, Run, RunStatus
from jobsched.storage.base import AttemptOutcome, Storage
from jobsched.storage.pagination import encode_cursor
from tests.contract.storage_scenario import EPOCH, StorageScenario, fire_at


async def _all_pages(
    storage: Storage, limit: int, job_id: uuid.UUID | None = None, status: RunStatus | None = None
) -> list[list[Run]]:
    pages: list[list[Run]] = []
    cursor: str | None = None
    while True:
        page = await storage.list_runs(job_id=job_id, status=status, limit=limit, cursor=cursor)
        pages.append(page.items)
        if page.next_cursor is None:
            return pages
        assert len(pages) < 100, "pagination does not end"
        cursor = page.next_cursor


async def _fire_two_jobs_at_the_same_times(
    storage: Storage, scenario: StorageScenario, count: int
) -> list[Run]:
    """``count`` fire times for each of two jobs: every fire time is shared (ties)."""
    await scenario.job(next_run_at=EPOCH)
    await scenario.job(next_run_at=EPOCH)
    times = [EPOCH + timedelta(minutes=minute) for minute in range(count)]
    return await storage.fire_due_jobs(EPOCH, 10, fire_at(times, None), published=True)


async def test_get_run_returns_the_stored_run(storage: Storage, scenario: StorageScenario) -> None:
    run = await scenario.ready_run()

    assert await storage.get_run(run.id) == run


async def test_get_run_of_an_unknown_id_raises_not_found(storage: Storage) -> None:
    missing = uuid.uuid4()

    with pytest.raises(NotFoundError) as raised:
        await storage.get_run(missing)

    assert (raised.value.resource, raised.value.identifier) == ("run", missing)


async def test_list_runs_pages_newest_fire_time_first_without_gaps_or_repeats(
    storage: Storage, scenario: StorageScenario
) -> None:
    fired = await _fire_two_jobs_at_the_same_times(storage, scenario, count=5)
    assert len(fired) == 10

    pages = await _all_pages(storage, limit=3)

    assert [len(page) for page in pages] == [3, 3, 3, 1]
    listed = [run for page in pages for run in page]
    assert sorted(run.id for run in listed) == sorted(run.id for run in fired)
    assert [(run.scheduled_for, run.id) for run in listed] == sorted(
        ((run.scheduled_for, run.id) for run in fired), reverse=True
    )


async def test_list_runs_of_one_job(storage: Storage, scenario: StorageScenario) -> None:
    fired = await _fire_two_jobs_at_the_same_times(storage, scenario, count=4)
    job_id = fired[0].job_id

    pages = await _all_pages(storage, limit=3, job_id=job_id)

    listed = [run for page in pages for run in page]
    assert [run.scheduled_for for run in listed] == [
        EPOCH + timedelta(minutes=minute) for minute in (3, 2, 1, 0)
    ]
    assert {run.job_id for run in listed} == {job_id}


async def test_list_runs_by_status(storage: Storage, scenario: StorageScenario) -> None:
    queued = [await scenario.ready_run() for _ in range(3)]
    running = await scenario.claimed_run()

    queued_pages = await _all_pages(storage, limit=2, status=RunStatus.QUEUED)
    running_pages = await _all_pages(storage, limit=2, status=RunStatus.RUNNING)
    dead_pages = await _all_pages(storage, limit=2, status=RunStatus.DEAD)

    assert sorted(run.id for page in queued_pages for run in page) == sorted(
        run.id for run in queued
    )
    assert [run.id for page in running_pages for run in page] == [running.id]
    assert dead_pages == [[]]


SOME_RUN_ID = "0190a7e4-5c3b-7f00-8000-000000000001"


BAD_RUNS_CURSORS = [
    "%%%",
    encode_cursor(SOME_RUN_ID),  # a jobs cursor: one value
    encode_cursor("yesterday", SOME_RUN_ID),
    encode_cursor(EPOCH.isoformat(), "not-a-uuid"),
    encode_cursor(EPOCH.replace(tzinfo=None).isoformat(), SOME_RUN_ID),  # no offset
    encode_cursor(12, None),
]


async def test_a_bad_runs_cursor_is_invalid_input(
    storage: Storage, scenario: StorageScenario
) -> None:
    await scenario.ready_run()

    for cursor in BAD_RUNS_CURSORS:
        with pytest.raises(InvalidInputError) as raised:
            await storage.list_runs(job_id=None, status=None, limit=10, cursor=cursor)
        assert raised.value.field == "cursor", cursor


async def test_list_attempts_in_attempt_order(storage: Storage, scenario: StorageScenario) -> None:
    run = await scenario.claimed_run(worker_id="worker-1")
    await storage.finish_attempts(
        [
            AttemptOutcome(
                run.id,
                1,
                "worker-1",
                AttemptStatus.FAILED,
                RunStatus.RETRYING,
                error="boom",
                retry_at=EPOCH - timedelta(days=3650),
            )
        ]
    )
    await storage.claim_runs([run.id], "worker-2", 60.0)

    listed = await storage.list_attempts(run.id)

    assert [(a.attempt, a.worker_id, a.status) for a in listed] == [
        (1, "worker-1", AttemptStatus.FAILED),
        (2, "worker-2", AttemptStatus.RUNNING),
    ]
    assert listed[0].error == "boom"
    assert listed[0].finished_at is not None
    assert listed[1].finished_at is None


async def test_list_attempts_of_an_unclaimed_run_is_empty(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.ready_run()

    assert await storage.list_attempts(run.id) == []
