"""Storage contract: creating, reading, listing, editing, deleting and triggering jobs."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Self
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from jobsched.core.errors import ConflictError, InvalidInputError, NotFoundError
from jobsched.core.models import (
    AttemptStatus,
    Job,
    JobStatus,
    RetryPolicy,
    RunStatus,
    RunTrigger,
)
from jobsched.storage import database
from jobsched.storage.base import AttemptOutcome, JobFilter, Storage
from jobsched.storage.pagination import encode_cursor
from tests.contract.storage_scenario import EPOCH, StorageScenario, fire_once, job_spec

# --- create and get ------------------------------------------------------------------


async def test_create_job_stores_every_field(storage: Storage) -> None:
    now = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    spec = job_spec(
        type="http",
        name="nightly-report",
        payload={"url": "https://example.com", "nested": {"list": [1, 2.5, None, "é"]}},
        schedule="0 3 * * *",
        timezone="Europe/Paris",
        queue="reports",
        priority=7,
        timeout_seconds=12.5,
        retry=RetryPolicy(
            max_attempts=5,
            backoff="fixed",
            initial_delay_seconds=2.0,
            max_delay_seconds=60.0,
            jitter=False,
        ),
    )

    created = await storage.create_job(spec, next_run_at=now + timedelta(hours=2), now=now)

    assert (created.name, created.type, created.schedule, created.timezone) == (
        "nightly-report",
        "http",
        "0 3 * * *",
        "Europe/Paris",
    )
    assert created.payload == spec.payload
    assert (created.queue, created.priority, created.timeout_seconds) == ("reports", 7, 12.5)
    assert created.retry == spec.retry
    assert created.status == JobStatus.ACTIVE
    assert created.next_run_at == now + timedelta(hours=2)
    assert created.schedule_anchor_at == created.created_at == created.updated_at == now
    assert created.last_fired_at is None
    assert await storage.get_job(created.id) == created


async def test_a_one_time_job_keeps_its_run_at(storage: Storage) -> None:
    run_at = datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)

    created = await storage.create_job(job_spec(run_at=run_at), next_run_at=run_at, now=EPOCH)

    stored = await storage.get_job(created.id)
    assert stored.run_at == run_at
    assert stored.schedule is None
    assert stored.next_run_at == run_at


async def test_a_job_without_next_run_is_created_completed(storage: Storage) -> None:
    created = await storage.create_job(job_spec(), next_run_at=None, now=EPOCH)

    assert created.status == JobStatus.COMPLETED
    assert (await storage.get_job(created.id)).status == JobStatus.COMPLETED


async def test_times_come_back_aware_in_utc(storage: Storage) -> None:
    paris_now = datetime(2030, 6, 1, 16, 0, tzinfo=ZoneInfo("Europe/Paris"))

    created = await storage.create_job(
        job_spec(), next_run_at=paris_now + timedelta(minutes=1), now=paris_now
    )

    stored = await storage.get_job(created.id)
    for value in (stored.created_at, stored.updated_at, stored.next_run_at):
        assert value is not None
        assert value.utcoffset() == timedelta(0)
    assert stored.created_at == datetime(2030, 6, 1, 14, 0, tzinfo=UTC)


async def test_a_taken_name_is_a_conflict_and_writes_nothing(
    storage: Storage, scenario: StorageScenario
) -> None:
    first = await scenario.job(name="daily-digest", type="email")

    with pytest.raises(ConflictError) as raised:
        await scenario.job(name="daily-digest", type="sms")

    assert raised.value.field == "name"
    assert "daily-digest" in raised.value.message
    assert scenario.count_jobs() == 1
    assert (await storage.get_job(first.id)).type == "email"


async def test_jobs_without_a_name_never_conflict(scenario: StorageScenario) -> None:
    await scenario.job(name=None)
    await scenario.job(name=None)

    assert scenario.count_jobs() == 2


async def test_an_unknown_job_is_not_found_and_nothing_changes(
    storage: Storage, scenario: StorageScenario
) -> None:
    await scenario.job()
    missing = uuid.uuid4()
    edits: list[Job] = []

    def edit(current: Job) -> Job:
        edits.append(current)
        return current

    with pytest.raises(NotFoundError) as raised:
        await storage.get_job(missing)
    assert (raised.value.resource, raised.value.identifier) == ("job", missing)
    with pytest.raises(NotFoundError):
        await storage.update_job(missing, edit)
    with pytest.raises(NotFoundError):
        await storage.delete_job(missing)
    with pytest.raises(NotFoundError):
        await storage.trigger_job(missing, published=True)

    assert edits == []
    assert (scenario.count_jobs(), scenario.count_runs()) == (1, 0)


# --- list --------------------------------------------------------------------------


async def _all_pages(storage: Storage, job_filter: JobFilter, limit: int) -> list[list[Job]]:
    pages: list[list[Job]] = []
    cursor: str | None = None
    while True:
        page = await storage.list_jobs(job_filter, limit=limit, cursor=cursor)
        pages.append(page.items)
        if page.next_cursor is None:
            return pages
        assert len(pages) < 100, "pagination does not end"
        cursor = page.next_cursor


async def test_list_jobs_pages_through_every_job_in_creation_order(
    storage: Storage, scenario: StorageScenario
) -> None:
    created = [await scenario.job(name=f"job-{index}") for index in range(8)]

    pages = await _all_pages(storage, JobFilter(), limit=3)

    assert [len(page) for page in pages] == [3, 3, 2]
    assert [job.id for page in pages for job in page] == [job.id for job in created]
    assert pages[0][0] == created[0]


async def test_a_last_full_page_has_no_next_cursor(
    storage: Storage, scenario: StorageScenario
) -> None:
    for _ in range(4):
        await scenario.job()

    pages = await _all_pages(storage, JobFilter(), limit=2)

    assert [len(page) for page in pages] == [2, 2]


async def test_list_jobs_of_an_empty_database(storage: Storage) -> None:
    page = await storage.list_jobs(JobFilter(), limit=10, cursor=None)

    assert (page.items, page.next_cursor) == ([], None)


async def test_list_jobs_filters_by_type_status_and_queue(
    storage: Storage, scenario: StorageScenario
) -> None:
    email_default = await scenario.job(type="email")
    email_bulk = [await scenario.job(type="email", queue="bulk") for _ in range(3)]
    await scenario.job(type="http", queue="bulk")
    done = await scenario.job(type="email", queue="bulk", next_run_at=None)

    async def ids(job_filter: JobFilter) -> list[uuid.UUID]:
        pages = await _all_pages(storage, job_filter, limit=2)
        return [job.id for page in pages for job in page]

    assert await ids(JobFilter(type="email")) == [
        email_default.id,
        *(job.id for job in email_bulk),
        done.id,
    ]
    assert await ids(JobFilter(status=JobStatus.COMPLETED)) == [done.id]
    assert await ids(JobFilter(type="email", queue="bulk", status=JobStatus.ACTIVE)) == [
        job.id for job in email_bulk
    ]
    assert await ids(JobFilter(type="absent")) == []


BAD_JOBS_CURSORS = [
    "not a cursor!",
    "e30",  # {} in base64
    encode_cursor("a", "b"),  # a runs cursor: two values
    encode_cursor("not-a-uuid"),
    encode_cursor(["nested"]),
    encode_cursor(None),
]


async def test_a_bad_jobs_cursor_is_invalid_input(
    storage: Storage, scenario: StorageScenario
) -> None:
    await scenario.job()

    for cursor in BAD_JOBS_CURSORS:
        with pytest.raises(InvalidInputError) as raised:
            await storage.list_jobs(JobFilter(), limit=10, cursor=cursor)
        assert raised.value.field == "cursor", cursor


# --- update ------------------------------------------------------------------------


async def test_update_job_writes_every_field_the_edit_returns(
    storage: Storage, scenario: StorageScenario
) -> None:
    job = await scenario.job(name="before", schedule="@every 1m")
    later = EPOCH + timedelta(hours=1)
    seen: list[Job] = []

    def edit(current: Job) -> Job:
        seen.append(current)
        return replace(
            current,
            name="after",
            type="http",
            schedule="*/5 * * * *",
            timezone="Asia/Tokyo",
            payload={"changed": True},
            queue="other",
            priority=-3,
            timeout_seconds=None,
            retry=RetryPolicy(max_attempts=9),
            status=JobStatus.PAUSED,
            next_run_at=later,
            schedule_anchor_at=later - timedelta(minutes=1),
            last_fired_at=EPOCH,
            updated_at=later,
        )

    updated = await storage.update_job(job.id, edit)

    assert seen == [job]
    assert await storage.get_job(job.id) == updated
    assert (updated.name, updated.status, updated.next_run_at) == (
        "after",
        JobStatus.PAUSED,
        later,
    )
    assert updated.created_at == job.created_at


async def test_an_edit_that_raises_writes_nothing(
    storage: Storage, scenario: StorageScenario
) -> None:
    job = await scenario.job(name="steady")

    def edit(current: Job) -> Job:
        raise InvalidInputError("schedule", "not a schedule")

    with pytest.raises(InvalidInputError):
        await storage.update_job(job.id, edit)

    assert await storage.get_job(job.id) == job


async def test_renaming_to_a_taken_name_is_a_conflict_and_writes_nothing(
    storage: Storage, scenario: StorageScenario
) -> None:
    await scenario.job(name="taken")
    job = await scenario.job(name="mine", priority=1)

    with pytest.raises(ConflictError) as raised:
        await storage.update_job(job.id, lambda current: replace(current, name="taken", priority=5))

    assert raised.value.field == "name"
    assert await storage.get_job(job.id) == job


# --- delete ------------------------------------------------------------------------


async def test_delete_job_removes_its_runs_and_attempts(
    storage: Storage, scenario: StorageScenario
) -> None:
    doomed = await scenario.claimed_run(worker_id="worker-1")
    await storage.finish_attempts(
        [AttemptOutcome(doomed.id, 1, "worker-1", AttemptStatus.FAILED, RunStatus.DEAD)]
    )
    kept = await scenario.claimed_run(worker_id="worker-1")

    await storage.delete_job(doomed.job_id)

    with pytest.raises(NotFoundError):
        await storage.get_job(doomed.job_id)
    with pytest.raises(NotFoundError):
        await storage.get_run(doomed.id)
    assert scenario.count_runs(doomed.job_id) == 0
    assert scenario.count_attempts(doomed.id) == 0
    assert (await storage.get_run(kept.id)).status == RunStatus.RUNNING
    assert scenario.count_attempts(kept.id) == 1


# --- trigger -----------------------------------------------------------------------


async def test_trigger_job_creates_a_manual_run_due_now(
    storage: Storage, scenario: StorageScenario
) -> None:
    job = await scenario.job(
        type="http", queue="urgent", priority=4, payload={"k": [1]}, timeout_seconds=3.0
    )
    before = await storage.now()

    run = await storage.trigger_job(job.id, published=False)

    after = await storage.now()
    assert run.trigger == RunTrigger.MANUAL
    assert run.status == RunStatus.QUEUED
    assert run.attempt == 0
    assert before <= run.scheduled_for <= after
    assert run.not_before == run.scheduled_for
    assert (run.job_id, run.job_type, run.queue, run.priority) == (job.id, "http", "urgent", 4)
    assert (run.payload, run.timeout_seconds, run.retry) == ({"k": [1]}, 3.0, job.retry)
    assert run.published_at is None
    assert (run.lease_owner, run.lease_expires_at, run.started_at, run.finished_at) == (
        None,
        None,
        None,
        None,
    )
    assert await storage.get_run(run.id) == run
    assert (await storage.get_job(job.id)).next_run_at == job.next_run_at


async def test_trigger_job_published_marks_the_run_published(
    storage: Storage, scenario: StorageScenario
) -> None:
    job = await scenario.job()

    run = await storage.trigger_job(job.id, published=True)

    assert run.published_at is not None
    assert (await storage.get_run(run.id)).published_at == run.published_at


class _StoppedClock(datetime):
    """``datetime`` whose ``now()`` is always EPOCH."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Self:
        return cls.fromtimestamp(EPOCH.timestamp(), tz)


@pytest.fixture
def stopped_clock(scenario: StorageScenario, monkeypatch: pytest.MonkeyPatch) -> datetime:
    """Stop the storage's clock at EPOCH: every statement after this sees the same now."""
    if scenario.sql.dialect.name == "sqlite":
        # The storage has no SQLite clock to read: it takes the process's.
        monkeypatch.setattr(database, "datetime", _StoppedClock)
    else:
        # A now() in public, searched before pg_catalog, hides the built-in one from
        # the connections the storage opens from here on.
        with scenario.sql.begin() as connection:
            connection.execute(
                sa.text(
                    "CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql STABLE"
                    f" AS 'SELECT to_timestamp({EPOCH.timestamp()})'"
                )
            )
            name = connection.execute(sa.text("SELECT current_database()")).scalar_one()
            connection.execute(
                sa.text(f'ALTER DATABASE "{name}" SET search_path = "$user", public, pg_catalog')
            )
    return EPOCH


async def test_triggers_at_the_same_instant_make_a_run_each(
    storage: Storage, scenario: StorageScenario, stopped_clock: datetime
) -> None:
    job = await scenario.job()

    first = await storage.trigger_job(job.id, published=True)
    second = await storage.trigger_job(job.id, published=True)

    assert first.scheduled_for == second.scheduled_for == stopped_clock
    assert first.id != second.id
    assert scenario.count_runs(job.id) == 2


async def test_a_trigger_at_a_fire_time_that_has_a_scheduled_run_makes_its_own_run(
    storage: Storage, scenario: StorageScenario, stopped_clock: datetime
) -> None:
    job = await scenario.job(next_run_at=stopped_clock)
    (fired,) = await storage.fire_due_jobs(
        stopped_clock, 10, fire_once(timedelta(days=1)), published=True
    )

    manual = await storage.trigger_job(job.id, published=True)

    assert manual.scheduled_for == fired.scheduled_for == stopped_clock
    assert (fired.trigger, manual.trigger) == (RunTrigger.SCHEDULE, RunTrigger.MANUAL)
    assert await storage.get_run(fired.id) == fired
    assert scenario.count_runs(job.id) == 2
