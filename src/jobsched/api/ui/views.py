"""What the pages show, computed from core records: schedules in words, fire times, marks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from jobsched.config.settings import Settings
from jobsched.core.models import Job, Run, RunTrigger
from jobsched.schedules import parse_schedule, preview_fire_times
from jobsched.schedules.describe import describe_schedule

FIRE_TIMES_SHOWN = 10


@dataclass(frozen=True, slots=True)
class FireTime:
    utc: datetime
    local_text: str


def schedule_words(job: Job) -> str:
    return describe_schedule(job.schedule, job.timezone, job.run_at)


def next_fire_times(job: Job, now: datetime, count: int = FIRE_TIMES_SHOWN) -> list[FireTime]:
    """The job's next fire times after now (its next_run_at first), in its zone and UTC."""
    zone = ZoneInfo(job.timezone)
    if job.schedule is None:
        times = [job.next_run_at] if job.next_run_at is not None else []
    else:
        schedule = parse_schedule(job.schedule, job.timezone, anchor=job.schedule_anchor_at)
        start = job.next_run_at - timedelta(microseconds=1) if job.next_run_at else now
        times = preview_fire_times(schedule, max(start, now), count)
    return [FireTime(utc=moment, local_text=_local(moment, zone)) for moment in times]


def preview(schedule: str, timezone: str, now: datetime, count: int = 5) -> list[FireTime]:
    """The fire times a new schedule would have; ``InvalidInputError`` for a bad one."""
    parsed = parse_schedule(schedule, timezone, anchor=now)
    zone = ZoneInfo(timezone)
    return [
        FireTime(utc=moment, local_text=_local(moment, zone))
        for moment in preview_fire_times(parsed, now, count)
    ]


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def is_late(run: Run, job: Job | None, settings: Settings) -> bool:
    """A scheduled run created later than its misfire grace: it fired as a misfire."""
    if run.trigger is not RunTrigger.SCHEDULE:
        return False
    grace = settings.scheduler.misfire_grace_seconds
    if job is not None and job.misfire_grace_seconds is not None:
        grace = job.misfire_grace_seconds
    return (run.created_at - run.scheduled_for).total_seconds() > grace
