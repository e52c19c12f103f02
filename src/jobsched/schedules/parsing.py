"""Turning a user's schedule expression into a ``Schedule``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

from jobsched.core.errors import InvalidScheduleError
from jobsched.schedules.base import Schedule, ensure_aware
from jobsched.schedules.cron import CronSchedule
from jobsched.schedules.cron_fields import parse_cron_fields
from jobsched.schedules.durations import parse_duration
from jobsched.schedules.interval import IntervalSchedule
from jobsched.schedules.timezones import parse_timezone

CRON_MACROS: Mapping[str, str] = MappingProxyType(
    {
        "@yearly": "0 0 1 1 *",
        "@annually": "0 0 1 1 *",
        "@monthly": "0 0 1 * *",
        "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *",
        "@hourly": "0 * * * *",
    }
)
_EVERY = "@every"
# Far longer than any sensible expression (six fields listing every value
# fit in about 400 characters); stops pathological input early.
_MAXIMUM_EXPRESSION_LENGTH = 1024


def parse_schedule(
    expression: str, timezone: str = "UTC", *, anchor: datetime | None = None
) -> Schedule:
    """Parse a recurring schedule read on the wall clock of ``timezone`` (an IANA name).

    ``expression`` is one of:

    * a cron expression of 5 fields (``minute hour day-of-month month
      day-of-week``) or 6 fields with **seconds first** (``second minute hour
      day-of-month month day-of-week``, as in robfig/cron, Quartz and
      cronsim); see ``cron_fields`` for the syntax and ``CronSchedule`` for
      the DST rules;
    * a macro, in any case: ``@yearly``/``@annually`` (``0 0 1 1 *``),
      ``@monthly``, ``@weekly`` (Sunday), ``@daily``/``@midnight``, ``@hourly``;
    * ``@every <duration>`` with a Go-style duration (``@every 1h30m``) of
      whole seconds, at least one; the schedule fires at ``anchor + k * every``
      for ``k >= 1``.

    Returns a ``CronSchedule`` or an ``IntervalSchedule``. Raises
    ``InvalidScheduleError`` with ``field="schedule"`` for a malformed
    expression or one that can never fire, and ``field="timezone"`` for an
    unknown zone (the expression is checked first). ``anchor`` is required
    for ``@every`` and must be aware; breaking that raises ``ValueError``,
    as it is the caller's mistake rather than the user's.
    """
    text = _normalise(expression)
    if text.lower().startswith(_EVERY):
        duration_text = _every_duration_text(text)
        every = parse_duration(duration_text)
        zone = parse_timezone(timezone)
        return _interval_schedule(f"{_EVERY} {duration_text}", zone, every, anchor)
    if text.startswith("@"):
        text = text.lower()
        cron_text = CRON_MACROS.get(text)
        if cron_text is None:
            raise InvalidScheduleError("schedule", _unknown_macro_message(text))
    else:
        cron_text = text
    fields = parse_cron_fields(cron_text)
    return CronSchedule(expression=text, timezone=parse_timezone(timezone), fields=fields)


def _normalise(expression: str) -> str:
    if len(expression) > _MAXIMUM_EXPRESSION_LENGTH:
        raise InvalidScheduleError(
            "schedule", f"longer than {_MAXIMUM_EXPRESSION_LENGTH} characters"
        )
    text = " ".join(expression.split())
    if not text:
        raise InvalidScheduleError("schedule", "empty; give a cron expression, macro or @every")
    return text


def _every_duration_text(text: str) -> str:
    keyword, _, duration = text.partition(" ")
    if keyword.lower() != _EVERY:  # e.g. "@everyday"
        raise InvalidScheduleError("schedule", _unknown_macro_message(keyword.lower()))
    if not duration:
        raise InvalidScheduleError("schedule", "@every needs a duration, e.g. '@every 5m'")
    return duration


def _interval_schedule(
    expression: str, zone: ZoneInfo, every: timedelta, anchor: datetime | None
) -> IntervalSchedule:
    if anchor is None:
        raise ValueError("anchor is required for @every schedules")
    ensure_aware(anchor, "anchor")
    return IntervalSchedule(
        expression=expression,
        timezone=zone,
        every=every,
        anchor=anchor.astimezone(UTC),
    )


def _unknown_macro_message(text: str) -> str:
    known = ", ".join([*CRON_MACROS, f"{_EVERY} <duration>"])
    return f"unknown macro {text!r}; expected one of {known}"
