"""Turning a user's one-time ``run_at`` value into an instant."""

from __future__ import annotations

from datetime import UTC, datetime

from jobsched.core.errors import InvalidScheduleError

_OFFSET_HINT = "add 'Z' or an offset such as '+02:00'"


def parse_run_at(value: str | datetime) -> datetime:
    """Return ``value`` as an aware datetime in UTC.

    A string must be an ISO 8601 timestamp (as ``datetime.fromisoformat``
    reads it: ``2025-06-01T09:30:00Z``, ``2025-06-01 09:30+02:00``, ...) and
    must carry ``Z`` or a UTC offset, because a wall time alone is ambiguous
    between zones and across DST changes. A ``datetime`` must be aware.
    Anything else raises ``InvalidScheduleError(field="run_at")``.
    Sub-second precision is kept.
    """
    moment = value if isinstance(value, datetime) else _parse_iso_8601(value)
    if moment.utcoffset() is None:
        raise InvalidScheduleError("run_at", f"{str(value)!r} has no UTC offset: {_OFFSET_HINT}")
    try:
        return moment.astimezone(UTC)
    except OverflowError as error:
        raise InvalidScheduleError(
            "run_at", f"{str(value)!r} is outside the years 1 to 9999 in UTC"
        ) from error


def _parse_iso_8601(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError as error:
        raise InvalidScheduleError(
            "run_at", f"{text!r} is not an ISO 8601 timestamp ({error}); {_OFFSET_HINT}"
        ) from error
