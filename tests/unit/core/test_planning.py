"""``first_fire_time`` and ``plan_due_job``: when a job fires, and what a due job does."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobsched.core.errors import InvalidScheduleError
from jobsched.core.models import Job, JobStatus, MisfirePolicy, RetryPolicy
from jobsched.core.planning import FirePlan, MisfireLimits, first_fire_time, plan_due_job
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


def test_a_fire_time_within_the_grace_still_runs_after_a_coalesced_one() -> None:
    due = datetime(2030, 1, 1, 12, 15, tzinfo=UTC)
    now = datetime(2030, 1, 1, 13, 0, 30, tzinfo=UTC)  # 13:00 is 30 s late: on time

    plan = plan_due_job(_job("*/15 * * * *", due), now=now)

    assert plan.fire_times == [due, datetime(2030, 1, 1, 13, 0, tzinfo=UTC)]
    assert plan.next_run_at == datetime(2030, 1, 1, 13, 15, tzinfo=UTC)


def test_late_fire_times_within_the_grace_each_run() -> None:
    """A scheduler replica dying for 5 s must not leave gaps in an every-second job."""
    anchor = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    due = anchor + timedelta(seconds=1)

    plan = plan_due_job(_job("@every 1s", due, anchor=anchor), now=due + timedelta(seconds=5.5))

    assert plan.fire_times == [due + timedelta(seconds=n) for n in range(6)]
    assert plan.next_run_at == due + timedelta(seconds=6)


def test_an_interval_job_resumes_on_its_anchored_grid() -> None:
    anchor = datetime(2030, 1, 1, 12, 3, tzinfo=UTC)
    due = anchor + timedelta(minutes=10)

    now = due + timedelta(hours=2, minutes=5)

    plan = plan_due_job(_job("@every 10m", due, anchor=anchor), now=now)

    assert plan == FirePlan(fire_times=[due], next_run_at=datetime(2030, 1, 1, 14, 23, tzinfo=UTC))


def test_misfire_all_runs_every_missed_fire_time_up_to_the_cap() -> None:
    due = datetime(2030, 1, 1, 12, 15, tzinfo=UTC)
    now = datetime(2030, 1, 1, 15, 47, tzinfo=UTC)
    job = replace(_job("*/15 * * * *", due), misfire_policy=MisfirePolicy.ALL)

    plan = plan_due_job(job, now=now)

    # 12:15 to 15:45: 15 fire times, the last one 2 minutes late, beyond the grace.
    assert plan.fire_times == [due + timedelta(minutes=15 * n) for n in range(15)]
    assert plan.next_run_at == datetime(2030, 1, 1, 16, 0, tzinfo=UTC)
    capped = plan_due_job(job, now=now, limits=MisfireLimits(max_catch_up_runs=3))
    assert capped.fire_times == [due + timedelta(minutes=15 * n) for n in range(3)]
    assert capped.next_run_at == datetime(2030, 1, 1, 16, 0, tzinfo=UTC)


def test_misfire_skip_runs_nothing_missed_but_keeps_on_time_fires() -> None:
    due = datetime(2030, 1, 1, 12, 15, tzinfo=UTC)
    job = replace(_job("*/15 * * * *", due), misfire_policy=MisfirePolicy.SKIP)

    late = plan_due_job(job, now=datetime(2030, 1, 1, 15, 47, tzinfo=UTC))
    assert late == FirePlan(fire_times=[], next_run_at=datetime(2030, 1, 1, 16, 0, tzinfo=UTC))

    within_grace = plan_due_job(job, now=due + timedelta(seconds=59))
    assert within_grace.fire_times == [due]


def test_a_job_can_have_its_own_grace() -> None:
    due = datetime(2030, 1, 1, 12, 15, tzinfo=UTC)
    strict = replace(
        _job("*/15 * * * *", due), misfire_policy=MisfirePolicy.SKIP, misfire_grace_seconds=1
    )

    assert plan_due_job(strict, now=due + timedelta(seconds=2)).fire_times == []
    assert plan_due_job(strict, now=due + timedelta(seconds=0.5)).fire_times == [due]


def test_a_missed_one_time_job_with_skip_ends_without_a_run() -> None:
    due = datetime(2030, 1, 1, 12, 15, tzinfo=UTC)
    job = replace(_job(None, due), misfire_policy=MisfirePolicy.SKIP)

    assert plan_due_job(job, now=due + timedelta(hours=1)) == FirePlan([], None)
    assert plan_due_job(job, now=due + timedelta(seconds=10)) == FirePlan([due], None)


def test_a_long_outage_is_not_walked_fire_time_by_fire_time() -> None:
    """An every-second job down for ten years plans in one step per kept fire time."""
    anchor = datetime(2020, 1, 1, tzinfo=UTC)
    due = anchor + timedelta(seconds=1)
    now = anchor + timedelta(days=3650)
    for policy in MisfirePolicy:
        job = replace(_job("* * * * * *", due, anchor=anchor), misfire_policy=policy)
        plan = plan_due_job(job, now=now)
        assert len(plan.fire_times) <= MisfireLimits().max_catch_up_runs + 61
        assert plan.next_run_at == now + timedelta(seconds=1)


@given(
    schedule=st.sampled_from(["*/15 * * * *", "0 9 * * 1-5", "@hourly", "@every 7m", "@daily"]),
    timezone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
    downtime=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)),
    policy=st.sampled_from(list(MisfirePolicy)),
)
def test_every_fire_time_is_planned_at_most_once_and_next_is_after_now(
    schedule: str, timezone: str, downtime: timedelta, policy: MisfirePolicy
) -> None:
    due = first_fire_time(schedule, timezone, None, ANCHOR)
    now = due + downtime
    job = replace(_job(schedule, due, timezone=timezone), misfire_policy=policy)

    plan = plan_due_job(job, now=now)

    assert plan.fire_times == sorted(set(plan.fire_times))
    assert all(due <= fire_time <= now for fire_time in plan.fire_times)
    parsed = parse_schedule(schedule, timezone, anchor=ANCHOR)
    on_time = [t for t in plan.fire_times if t >= now - timedelta(seconds=60)]
    # Every fire time within the grace is planned: none of them is skipped.
    expected_on_time: list[datetime] = []
    fire_time = parsed.next_fire_after(
        max(due, now - timedelta(seconds=60)) - timedelta(microseconds=1)
    )
    while fire_time is not None and fire_time <= now:
        expected_on_time.append(fire_time)
        fire_time = parsed.next_fire_after(fire_time)
    assert on_time == expected_on_time
    assert plan.next_run_at == parsed.next_fire_after(now)  # the first fire time after now
