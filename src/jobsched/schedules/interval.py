"""Interval schedules (``@every 5m``): a fixed grid of instants from an anchor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from jobsched.schedules.base import ensure_aware


@dataclass(frozen=True)
class IntervalSchedule:
    """Fires at ``anchor + k * every`` for every whole ``k >= 1``.

    Build one with ``parse_schedule("@every ...", anchor=...)``. The grid is
    in elapsed time, so clock changes do not move it; ``timezone`` is kept
    only so every schedule carries one. The anchor is normally the moment the
    job was created or its schedule last changed, so a job that was down for
    a while resumes on its original grid rather than drifting.
    """

    expression: str
    timezone: ZoneInfo
    every: timedelta
    anchor: datetime  # aware, in UTC

    def __post_init__(self) -> None:
        ensure_aware(self.anchor, "anchor")
        if self.every < timedelta(seconds=1):
            raise ValueError(f"every must be at least one second, got {self.every!r}")

    def next_fire_after(self, after: datetime) -> datetime | None:
        """First grid instant strictly after ``after``; see ``Schedule.next_fire_after``.

        Computed in constant time, however far ``after`` lies from the anchor.
        """
        ensure_aware(after, "after")
        # Subtract in UTC: Python subtracts two datetimes sharing a tzinfo as
        # wall times, which would be an hour out across a DST change.
        elapsed = after.astimezone(UTC) - self.anchor.astimezone(UTC)
        periods = max(elapsed // self.every + 1, 1)
        try:
            return self.anchor.astimezone(UTC) + self.every * periods
        except OverflowError:  # past year 9999
            return None
