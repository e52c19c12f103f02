"""The contract every schedule meets, and helpers built only on that contract."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol
from zoneinfo import ZoneInfo


class Schedule(Protocol):
    """When a recurring job fires.

    A schedule is an immutable value: it holds no state between calls, so
    ``next_fire_after`` is a pure function of its argument and any process may
    compute the next fire time of any job from the stored expression alone.
    """

    @property
    def expression(self) -> str:
        """The expression as the user gave it, with whitespace collapsed and macros lowercased."""
        ...

    @property
    def timezone(self) -> ZoneInfo:
        """The zone whose wall clock the expression is read in."""
        ...

    def next_fire_after(self, after: datetime) -> datetime | None:
        """Return the first fire time strictly after ``after``.

        ``after`` must be timezone-aware (any zone); a naive value raises
        ``ValueError`` because it is a programming error, not user input.
        The result is an aware datetime in UTC, or ``None`` when the schedule
        has no fire time left that ``datetime`` can represent (before year 9999).
        """
        ...


def ensure_aware(value: datetime, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` carries a UTC offset.

    Used for arguments that come from code (``after``, ``anchor``), where a
    naive datetime is a bug to surface loudly rather than a user error.
    """
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")


def preview_fire_times(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """Return the next ``count`` fire times strictly after ``after``, in UTC, strictly increasing.

    The list is shorter than ``count`` only when the schedule runs out of
    representable fire times. ``after`` must be aware and ``count`` must not
    be negative; otherwise ``ValueError``.
    """
    ensure_aware(after, "after")
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    fire_times: list[datetime] = []
    cursor = after.astimezone(UTC)
    while len(fire_times) < count:
        fire_time = schedule.next_fire_after(cursor)
        if fire_time is None:
            break
        fire_times.append(fire_time)
        cursor = fire_time
    return fire_times
