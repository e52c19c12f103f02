"""When jobs fire: cron, macro and interval schedules, timezones and one-time run times.

Pure functions and immutable values only: no I/O, no clock. Every function
that needs "now" takes it as an argument, and every instant returned is an
aware ``datetime`` in UTC. User mistakes raise
``jobsched.core.errors.InvalidScheduleError`` whose ``field`` is
``"schedule"``, ``"timezone"`` or ``"run_at"``.
"""

from jobsched.schedules.base import Schedule, preview_fire_times
from jobsched.schedules.cron import CronSchedule
from jobsched.schedules.cron_fields import CronFields
from jobsched.schedules.durations import parse_duration
from jobsched.schedules.interval import IntervalSchedule
from jobsched.schedules.parsing import CRON_MACROS, parse_schedule
from jobsched.schedules.run_at import parse_run_at
from jobsched.schedules.timezones import parse_timezone

__all__ = [
    "CRON_MACROS",
    "CronFields",
    "CronSchedule",
    "IntervalSchedule",
    "Schedule",
    "parse_duration",
    "parse_run_at",
    "parse_schedule",
    "parse_timezone",
    "preview_fire_times",
]
