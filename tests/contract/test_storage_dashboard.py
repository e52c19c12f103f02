"""Storage contract: what the dashboard keeps and reads, on SQLite and PostgreSQL alike.

Sessions by hash, the jobs search, deleting finished runs, the status strips and
the overview's aggregates.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobsched.core.errors import ConflictError, InvalidInputError, NotFoundError
from jobsched.core.models import AttemptStatus, Job, RunStatus
from jobsched.storage.base import AttemptOutcome, JobFilter, Storage
from jobsched.storage.schema import attempts, runs
from tests.contract.storage_scenario import EPOCH, StorageScenario


async def test_a_session_is_found_by_its_hash_until_deleted(storage: Storage) -> None:
    now = await storage.now()
    await storage.create_ui_session(
        session_hash="a" * 64, token_hash="b" * 64, now=now, expires_at=now + timedelta(hours=1)
    )
    found = await storage.find_ui_session("a" * 64)
    assert found is not None
    assert found.token_hash == "b" * 64
    assert found.expires_at == now + timedelta(hours=1)
    assert await storage.find_ui_session("c" * 64) is None
    await storage.delete_ui_session("a" * 64)
    assert await storage.find_ui_session("a" * 64) is None


async def test_opening_a_session_deletes_expired_ones(storage: Storage) -> None:
    now = await storage.now()
    await storage.create_ui_session(
        session_hash="1" * 64, token_hash="b" * 64, now=now, expires_at=now - timedelta(seconds=1)
    )
    await storage.create_ui_session(
        session_hash="2" * 64, token_hash="b" * 64, now=now, expires_at=now + timedelta(hours=1)
    )
    assert await storage.find_ui_session("1" * 64) is None
    assert await storage.find_ui_session("2" * 64) is not None


async def test_search_matches_names_and_types_literally(scenario: StorageScenario) -> None:
    report = await scenario.job(name="Nightly_Report")
    await scenario.job(name="nightlyXreport")  # "_" is not a wildcard
    http = await scenario.job(name="ping", type="http")
    found = await scenario.storage.list_jobs(JobFilter(search="ly_rep"), limit=10, cursor=None)
    assert [job.id for job in found.items] == [report.id]
    by_type = await scenario.storage.list_jobs(JobFilter(search="HTT"), limit=10, cursor=None)
    assert [job.id for job in by_type.items] == [http.id]


async def test_delete_run_deletes_a_finished_run_with_its_attempts(
    scenario: StorageScenario,
) -> None:
    storage = scenario.storage
    run = await scenario.claimed_run()
    with pytest.raises(ConflictError):
        await storage.delete_run(run.id)
    outcome = AttemptOutcome(
        run_id=run.id,
        attempt=run.attempt,
        worker_id="worker-1",
        attempt_status=AttemptStatus.FAILED,
        run_status=RunStatus.DEAD,
        error="boom",
    )
    assert await storage.finish_attempts([outcome]) == [True]
    with pytest.raises(NotFoundError):
        await storage.delete_run(run.id, queues=frozenset({"elsewhere"}))
    await storage.delete_run(run.id)
    assert scenario.count(runs, runs.c.id == run.id) == 0
    assert scenario.count(attempts, attempts.c.run_id == run.id) == 0


async def test_status_strips_hold_each_jobs_last_runs_newest_first(
    scenario: StorageScenario,
) -> None:
    storage = scenario.storage
    first = await scenario.job()
    second = await scenario.job()
    triggered = [await storage.trigger_job(first.id, published=True) for _ in range(4)]
    strips = await storage.recent_runs_of_jobs([first.id, second.id], 3)
    assert strips[second.id] == []
    shown = [mark.id for mark in strips[first.id]]
    newest_first = sorted(triggered, key=lambda run: (run.scheduled_for, run.id), reverse=True)
    assert shown == [run.id for run in newest_first[:3]]


async def test_figures_count_runs_by_status_and_attempts_by_minute(
    scenario: StorageScenario,
) -> None:
    storage = scenario.storage
    before = await storage.now()
    running = await scenario.claimed_run(queue="reports")
    await scenario.ready_run(queue="default")
    counts = await storage.run_status_counts()
    assert counts == {"running": 1, "queued": 1}
    assert await storage.run_status_counts(queues=frozenset({"reports"})) == {"running": 1}
    outcome = AttemptOutcome(
        run_id=running.id,
        attempt=running.attempt,
        worker_id="worker-1",
        attempt_status=AttemptStatus.SUCCEEDED,
        run_status=RunStatus.SUCCEEDED,
    )
    assert await storage.finish_attempts([outcome]) == [True]
    activity = await storage.attempts_per_minute(before - timedelta(minutes=1))
    assert sum(minute.started for minute in activity) == 1
    assert sum(minute.succeeded for minute in activity) == 1
    assert sum(minute.failed for minute in activity) == 0
    assert all(minute.minute.second == 0 for minute in activity)
    assert activity[0].minute <= before.replace(second=0, microsecond=0) + timedelta(minutes=1)
    elsewhere = await storage.attempts_per_minute(
        before - timedelta(minutes=1), queues=frozenset({"default"})
    )
    assert elsewhere == []


async def _all_pages(storage: Storage, job_filter: JobFilter, limit: int) -> list[object]:
    seen: list[object] = []
    cursor = None
    while True:
        page = await storage.list_jobs(job_filter, limit=limit, cursor=cursor)
        seen.extend(job.id for job in page.items)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


@pytest.mark.parametrize("sort", ["name", "next_run"])
async def test_sorted_pages_hold_every_job_once_in_order_nulls_last(
    scenario: StorageScenario, sort: str
) -> None:
    base = EPOCH
    made = [
        await scenario.job(name="b", next_run_at=base + timedelta(minutes=2)),
        await scenario.job(name=None, next_run_at=base + timedelta(minutes=1)),
        await scenario.job(name="a", next_run_at=None),
        await scenario.job(name="c", next_run_at=base + timedelta(minutes=1)),
        await scenario.job(name=None, next_run_at=None),
    ]
    job_filter = JobFilter(sort=sort)  # type: ignore[arg-type]  # parametrized
    ordered = await _all_pages(scenario.storage, job_filter, limit=2)

    def key(job: Job) -> tuple[bool, object, str]:
        value = job.name if sort == "name" else job.next_run_at
        return (value is None, value or "", str(job.id))

    assert ordered == [job.id for job in sorted(made, key=key)]


async def test_a_cursor_of_another_order_is_refused(scenario: StorageScenario) -> None:
    for name in ("x", "y"):
        await scenario.job(name=name)
    page = await scenario.storage.list_jobs(JobFilter(), limit=1, cursor=None)
    assert page.next_cursor is not None
    with pytest.raises(InvalidInputError):
        await scenario.storage.list_jobs(JobFilter(sort="name"), limit=1, cursor=page.next_cursor)
