"""When a job fires: its first fire time, and what a due job does when the scheduler finds it.

Pure functions of the job and an explicit ``now``; the scheduler and the API
both call them, so a schedule means the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jobsched.core.models import Job
from jobsched.schedules import parse_schedule


@dataclass(frozen=True, slots=True)
class FirePlan:
    """The runs to create for a due job, and its next fire time.

    ``next_run_at`` None means the job has no further fire time and becomes ``completed``.
    """

    fire_times: list[datetime]
    next_run_at: datetime | None


def first_fire_time(
    schedule: str | None, timezone: str, run_at: datetime | None, anchor: datetime
) -> datetime:
    """The first fire time of a job defined (or redefined) at ``anchor``.

    A one-time job fires at ``run_at`` (``anchor`` if omitted); a recurring job at
    its first fire time strictly after ``anchor``. Raises ``InvalidScheduleError``.
    """
    if schedule is None:
        return run_at if run_at is not None else anchor
    parsed = parse_schedule(schedule, timezone, anchor=anchor)
    next_time = parsed.next_fire_after(anchor)
    if next_time is None:  # parse_schedule refuses expressions that never fire
        raise AssertionError(f"schedule {schedule!r} has no fire time after {anchor}")
    return next_time


def plan_due_job(job: Job, now: datetime) -> FirePlan:
    """What a due job does at ``now``: misfire policy ``coalesce``.

    The job fires once for its due time, however many fire times passed while the
    scheduler was down, and its next fire time is the first one after ``now``.
    """
    assert job.next_run_at is not None, "only due jobs are planned"
    if job.schedule is None:
        return FirePlan(fire_times=[job.next_run_at], next_run_at=None)
    parsed = parse_schedule(job.schedule, job.timezone, anchor=job.schedule_anchor_at)
    following = parsed.next_fire_after(max(now, job.next_run_at))
    return FirePlan(fire_times=[job.next_run_at], next_run_at=following)
