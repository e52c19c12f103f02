"""Schedules in words, for people: ``*/15 * * * *`` is "every 15 minutes".

Covers the shapes schedules usually take (steps of minutes or hours, fixed times of
day, weekdays, days of the month, the macros and ``@every``); anything else is
shown as its expression, which is never wrong. Pure: it reads the expression as
text and assumes it is valid (``parse_schedule`` checked it when the job was saved).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from jobsched.schedules.durations import parse_duration

_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_WEEKDAY_NAMES = {name[:3].lower(): index for index, name in enumerate(_WEEKDAYS)}
_MACROS = {
    "@yearly": "at 00:00 on 1 January",
    "@annually": "at 00:00 on 1 January",
    "@monthly": "at 00:00 on day 1 of the month",
    "@weekly": "at 00:00 on Sunday",
    "@daily": "at 00:00",
    "@midnight": "at 00:00",
    "@hourly": "every hour, at minute 0",
}
_UNITS = ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))
_CRON_FIELDS = 5


def describe_schedule(schedule: str | None, timezone: str, run_at: datetime | None) -> str:
    """The schedule in words; a one-time job's run time in UTC."""
    if schedule is None:
        if run_at is None:
            return "once"
        return "once, at " + run_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    text = " ".join(schedule.split())
    if text.lower().startswith("@every "):
        return "every " + describe_duration(parse_duration(text.split(" ", 1)[1]))
    words = _MACROS.get(text.lower()) or _cron_in_words(text)
    if words is None:
        words = f"cron {text}"
    # An interval is elapsed time, the same in every zone; wall-clock times are not.
    if timezone != "UTC" and not words.startswith("every minute"):
        words += f" in {timezone}"
    return words


def describe_duration(duration: timedelta) -> str:
    """``1h30m`` is "1 hour 30 minutes"; ``15m`` is "15 minutes"; ``1m`` is "minute"."""
    remaining = int(duration.total_seconds())
    parts: list[str] = []
    for size, unit in _UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count} {unit}" + ("s" if count != 1 else ""))
    if len(parts) == 1 and parts[0].startswith("1 "):
        return parts[0][2:]
    return " ".join(parts) or "0 seconds"


def _cron_in_words(text: str) -> str | None:
    fields = text.split(" ")
    if len(fields) != _CRON_FIELDS:
        return None
    minute, hour, day, month, weekday = fields
    if month != "*":
        return None
    timing = _time_of_day(minute, hour)
    if timing is None:
        return None
    days = _days(day, weekday)
    if days is None:
        return None
    return f"{timing} {days}".strip()


def _minutes_of_every_hour(minute: str) -> str | None:
    if minute == "*":
        return "every minute"
    if minute.startswith("*/") and minute[2:].isdigit():
        return f"every {_count(int(minute[2:]), 'minute')}"
    if minute.isdigit():
        return f"every hour, at minute {int(minute)}"
    return None


def _time_of_day(minute: str, hour: str) -> str | None:
    if hour == "*":
        return _minutes_of_every_hour(minute)
    if not minute.isdigit():
        return None
    if hour.startswith("*/") and hour[2:].isdigit():
        return f"every {_count(int(hour[2:]), 'hour')}, at minute {int(minute)}"
    hours = hour.split(",")
    if all(part.isdigit() for part in hours):
        return "at " + ", ".join(f"{int(part):02d}:{int(minute):02d}" for part in hours)
    return None


def _days(day: str, weekday: str) -> str | None:
    if day == "*" and weekday == "*":
        return ""
    if day == "*":
        names = _weekdays(weekday)
        return None if names is None else f"on {names}"
    if weekday == "*" and all(part.isdigit() for part in day.split(",")):
        return f"on day {day.replace(',', ', ')} of the month"
    return None


def _weekdays(field: str) -> str | None:
    if field.lower() in {"1-5", "mon-fri"}:
        return "weekdays (Monday to Friday)"
    names = []
    for part in field.split(","):
        index = _weekday_index(part)
        if index is None:
            return None
        names.append(_WEEKDAYS[index])
    return ", ".join(names)


def _weekday_index(part: str) -> int | None:
    if part.isdigit() and int(part) <= 7:
        return int(part) % 7
    return _WEEKDAY_NAMES.get(part.lower())


def _count(number: int, unit: str) -> str:
    return unit if number == 1 else f"{number} {unit}s"
