"""When a job fires: its first fire time, and what a due job does when the scheduler finds it.

Pure functions of the job and an explicit ``now``; the scheduler and the API
both call them, so a schedule means the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from jobsched.core.models import Job, MisfirePolicy
from jobsched.schedules import Schedule, parse_schedule


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


@dataclass(frozen=True, slots=True)
class MisfireLimits:
    """Scheduler-wide bounds on catching up.

    ``default_grace_seconds``: a fire time at most this late counts as on time and is
    run like any other (jobs may set their own ``misfire_grace_seconds``).
    ``max_catch_up_runs``: the most runs ``misfire_policy: all`` creates for the
    fire times missed beyond the grace; the oldest are kept, the rest skipped.
    ``max_runs_per_plan`` bounds one plan's work; a job with more due fire times
    stays due and continues in the next tick.
    """

    default_grace_seconds: float = 60.0
    max_catch_up_runs: int = 100
    max_runs_per_plan: int = 1000


def plan_due_job(job: Job, now: datetime, limits: MisfireLimits | None = None) -> FirePlan:
    """What a due job does at ``now``.

    Every fire time from ``next_run_at`` up to ``now`` that is late by no more than
    the grace is on time and gets a run. Fire times missed by more than the grace
    (the scheduler was down) follow the job's ``misfire_policy``: ``coalesce``, one
    run (for the first missed time) stands for all of them; ``all``, a run each, at
    most ``max_catch_up_runs``; ``skip``, none. The next fire time is the first one
    after ``now``. Never loops over a long outage: missed fire times beyond what
    the policy keeps are jumped over in one step.
    """
    limits = limits or MisfireLimits()
    due = job.next_run_at
    assert due is not None, "only due jobs are planned"
    grace = timedelta(
        seconds=limits.default_grace_seconds
        if job.misfire_grace_seconds is None
        else job.misfire_grace_seconds
    )
    missed = due < now - grace
    if job.schedule is None:
        if missed and job.misfire_policy is MisfirePolicy.SKIP:
            return FirePlan(fire_times=[], next_run_at=None)
        return FirePlan(fire_times=[due], next_run_at=None)
    schedule = parse_schedule(job.schedule, job.timezone, anchor=job.schedule_anchor_at)
    fire_times: list[datetime] = []
    next_time: datetime | None = due
    if missed:
        fire_times = _missed_fire_times_kept(schedule, job.misfire_policy, due, now - grace, limits)
        # The first fire time at or after the start of the grace window.
        next_time = schedule.next_fire_after(now - grace - _RESOLUTION)
    budget = len(fire_times) + limits.max_runs_per_plan
    while next_time is not None and next_time <= now and len(fire_times) < budget:
        fire_times.append(next_time)
        next_time = schedule.next_fire_after(next_time)
    return FirePlan(fire_times=fire_times, next_run_at=next_time)


# The finest time step fire times are computed at: datetimes count microseconds.
_RESOLUTION = timedelta(microseconds=1)


def _missed_fire_times_kept(
    schedule: Schedule,
    policy: MisfirePolicy,
    first_missed: datetime,
    grace_starts: datetime,
    limits: MisfireLimits,
) -> list[datetime]:
    """The fire times before ``grace_starts`` that ``policy`` still runs."""
    if policy is MisfirePolicy.SKIP:
        return []
    if policy is MisfirePolicy.COALESCE:
        return [first_missed]
    kept: list[datetime] = []
    fire_time: datetime | None = first_missed
    while fire_time is not None and fire_time < grace_starts:
        if len(kept) == limits.max_catch_up_runs:
            break
        kept.append(fire_time)
        fire_time = schedule.next_fire_after(fire_time)
    return kept
