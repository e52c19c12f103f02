"""How wall-clock times in a zone map to instants across UTC-offset changes.

A *wall time* here is a naive ``datetime`` read on the clocks of a zone.
Most wall times name exactly one instant. When clocks jump forward (spring)
the skipped wall times form a *gap* and name no instant; when clocks fall
back (autumn) the repeated wall times form a *repeated period* and name two.
Every function returns instants as aware UTC datetimes.

Offset changes are found by bisection on whole seconds, which is exact for
every change in the IANA database, because none happens at a fractional second.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

_ONE_SECOND = timedelta(seconds=1)


def instants_of_wall_time(wall: datetime, zone: ZoneInfo) -> tuple[datetime, ...]:
    """Return the instants whose local time in ``zone`` is ``wall``, earliest first.

    The tuple is empty for a wall time in a gap, has one instant for an
    ordinary wall time and two for a wall time in a repeated period.
    """
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return (first.astimezone(UTC),)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall:
        return ()
    return (first.astimezone(UTC), second.astimezone(UTC))


def end_of_gap(wall: datetime, zone: ZoneInfo) -> datetime:
    """For a wall time in a gap, return the first instant after the gap (the clock change).

    E.g. 02:30 on 2024-03-31 in Europe/Berlin gives 01:00 UTC, which is 03:00
    local. The result for a wall time outside a gap is meaningless.
    """
    # In a gap, fold=1 reads the wall time with the offset after the change
    # (an instant before it) and fold=0 with the offset before (an instant after it).
    before_change = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    after_change = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    return _first_instant_with_new_offset(before_change, after_change, zone)


def repeated_period(wall: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """For a wall time in a repeated period, return the period's wall times as ``[start, end)``.

    E.g. 01:30 on 2024-11-03 in America/New_York gives (01:00, 02:00). The
    result for a wall time outside a repeated period is meaningless.
    """
    first_pass = wall.replace(tzinfo=zone, fold=0)
    second_pass = wall.replace(tzinfo=zone, fold=1)
    change = _first_instant_with_new_offset(
        first_pass.astimezone(UTC), second_pass.astimezone(UTC), zone
    )
    start = change.astimezone(zone).replace(tzinfo=None)
    repeated_length = _offset(first_pass) - _offset(second_pass)
    return start, start + repeated_length


def wall_time_of(instant: datetime, zone: ZoneInfo) -> datetime:
    """Return the naive wall time of an aware ``instant`` on the clocks of ``zone``."""
    return instant.astimezone(zone).replace(tzinfo=None)


def _first_instant_with_new_offset(earlier: datetime, later: datetime, zone: ZoneInfo) -> datetime:
    # Invariant: `low` has the old offset and `high` does not; exactly one
    # change lies between them, because callers pass instants at most one
    # gap or repeated period apart. Both ends are whole seconds, so the
    # midpoint always moves and the loop ends after about log2(gap seconds) steps.
    low = earlier.replace(microsecond=0)
    high = later.replace(microsecond=0)
    old_offset = _offset(low.astimezone(zone))
    while (span_seconds := (high - low) // _ONE_SECOND) > 1:
        middle = low + timedelta(seconds=span_seconds // 2)
        if _offset(middle.astimezone(zone)) == old_offset:
            low = middle
        else:
            high = middle
    return high


def _offset(moment: datetime) -> timedelta:
    offset = moment.utcoffset()
    if offset is None:  # only reachable with a naive datetime, which callers never pass
        raise ValueError(f"{moment!r} has no UTC offset")
    return offset
