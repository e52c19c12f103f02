"""``first_fire_time`` and ``plan_due_job``: when a job fires, and what a due job does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobsched.core.errors import InvalidScheduleError
from jobsched.core.models import Job, JobStatus, RetryPolicy
from jobsched.core.planning import FirePlan, first_fire_time, plan_due_job
from jobsched.schedules import parse_schedule

ANCHOR = datetime(2030, 1, 1, 12, 7, 30, tzinfo=UTC)


def _job(
    schedule: str | None,
    next_run_at: datetime,
    *,
    timezone: str = "UTC",
    anchor: datetime = ANCHOR,
) -> Job:
    return Job(
        id=uuid.uuid4(),
        name=None,
        type="noop",
        schedule=schedule,
        timezone=timezone,
        run_at=None if schedule is not None else next_run_at,
        payload={},
        queue="default",
        priority=0,
        timeout_seconds=None,
        retry=RetryPolicy(),
        status=JobStatus.ACTIVE,
        next_run_at=next_run_at,
        schedule_anchor_at=anchor,
        last_fired_at=None,
        created_at=anchor,
        updated_at=anchor,
    )


# --- first_fire_time -------------------------------------------------------------------


def test_a_one_time_job_fires_at_its_run_at() -> None:
    run_at = datetime(2030, 3, 4, 5, 6, tzinfo=UTC)

    assert first_fire_time(None, "UTC", run_at, ANCHOR) == run_at


def test_a_one_time_job_without_run_at_fires_at_once() -> None:
    assert first_fire_time(None, "UTC", None, ANCHOR) == ANCHOR


@pytest.mark.parametrize(
    ("schedule", "timezone", "anchor", "expected"),
    [
        ("*/15 * * * *", "UTC", ANCHOR, datetime(2030, 1, 1, 12, 15, tzinfo=UTC)),
        # strictly after the anchor, even when the anchor is itself a fire time
        (
            "*/15 * * * *",
            "UTC",
            datetime(2030, 1, 1, 12, 15, tzinfo=UTC),
            datetime(2030, 1, 1, 12, 30, tzinfo=UTC),
        ),
        # 09:00 in New York in winter is 14:00 UTC
        ("0 9 * * *", "America/New_York", ANCHOR, datetime(2030, 1, 1, 14, 0, tzinfo=UTC)),
        ("@daily", "UTC", ANCHOR, datetime(2030, 1, 2, 0, 0, tzinfo=UTC)),
        ("@every 10m", "UTC", ANCHOR, ANCHOR + timedelta(minutes=10)),
    ],
)
def test_a_recurring_job_fires_first_after_its_anchor(
    schedule: str, timezone: str, anchor: datetime, expected: datetime
) -> None:
    fire_time = first_fire_time(schedule, timezone, None, anchor)

    assert fire_time == expected
    assert fire_time.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("schedule", "timezone", "field"),
    [
        ("61 * * * *", "UTC", "schedule"),
        ("not a schedule", "UTC", "schedule"),
        ("0 9 * * *", "Mars/Olympus_Mons", "timezone"),
    ],
)
def test_an_unusable_schedule_is_refused(schedule: str, timezone: str, field: str) -> None:
    with pytest.raises(InvalidScheduleError) as raised:
        first_fire_time(schedule, timezone, None, ANCHOR)

    assert raised.value.field == field


# --- plan_due_job ------------------------------------------------------------------------


def test_a_due_one_time_job_fires_once_and_ends() -> None:
    due = datetime(2030, 1, 1, 13, 0, tzinfo=UTC)

    plan = plan_due_job(_job(None, due), now=due + timedelta(hours=5))

    assert plan == FirePlan(fire_times=[due], next_run_at=None)


def test_a_job_on_time_fires_and_moves_to_its_next_fire_time() -> None:
    due = datetime(2030, 1, 1, 12, 15, tzinfo=UTC)

    plan = plan_due_job(_job("*/15 * * * *", due), now=due + timedelta(milliseconds=300))

    assert plan == FirePlan(fire_times=[due], next_run_at=due + timedelta(minutes=15))


def test_after_downtime_a_job_coalesces_to_one_run() -> None:
    due = datetime(2030, 1, 1, 12, 15, tzinfo=UTC)
    now = datetime(2030, 1, 1, 15, 47, tzinfo=UTC)  # 14 fire times were missed

    plan = plan_due_job(_job("*/15 * * * *", due), now=now)

    assert plan == FirePlan(fire_times=[due], next_run_at=datetime(2030, 1, 1, 16, 0, tzinfo=UTC))


def test_a_fire_time_equal_to_now_is_coalesced_too() -> None:
    due = datetime(2030, 1, 1, 12, 15, tzinfo=UTC)
    now = datetime(2030, 1, 1, 13, 0, tzinfo=UTC)

    plan = plan_due_job(_job("*/15 * * * *", due), now=now)

    assert plan.fire_times == [due]
    assert plan.next_run_at == datetime(2030, 1, 1, 13, 15, tzinfo=UTC)


def test_an_interval_job_resumes_on_its_anchored_grid() -> None:
    anchor = datetime(2030, 1, 1, 12, 3, tzinfo=UTC)
    due = anchor + timedelta(minutes=10)

    plan = plan_due_job(_job("@every 10m", due, anchor=anchor), now=due + timedelta(hours=2))

    assert plan == FirePlan(fire_times=[due], next_run_at=datetime(2030, 1, 1, 14, 23, tzinfo=UTC))


@given(
    schedule=st.sampled_from(["*/15 * * * *", "0 9 * * 1-5", "@hourly", "@every 7m", "@daily"]),
    timezone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
    downtime=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)),
)
def test_a_due_job_fires_exactly_once_and_next_after_now(
    schedule: str, timezone: str, downtime: timedelta
) -> None:
    due = first_fire_time(schedule, timezone, None, ANCHOR)
    now = due + downtime

    plan = plan_due_job(_job(schedule, due, timezone=timezone), now=now)

    assert plan.fire_times == [due]
    assert plan.next_run_at is not None
    assert plan.next_run_at > now
    expected = parse_schedule(schedule, timezone, anchor=ANCHOR).next_fire_after(now)
    assert plan.next_run_at == expected  # the first fire time after now: none skipped
