"""@every schedules: a grid of instants anchor + k * every, k >= 1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobsched.schedules import IntervalSchedule, parse_schedule

ANCHOR = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def every(duration: str, anchor: datetime = ANCHOR) -> IntervalSchedule:
    schedule = parse_schedule(f"@every {duration}", "Europe/Berlin", anchor=anchor)
    assert isinstance(schedule, IntervalSchedule)
    return schedule


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (ANCHOR - timedelta(days=3), ANCHOR + timedelta(minutes=5)),  # before the anchor
        (ANCHOR, ANCHOR + timedelta(minutes=5)),  # the anchor itself never fires
        (ANCHOR + timedelta(minutes=4, seconds=59), ANCHOR + timedelta(minutes=5)),
        (ANCHOR + timedelta(minutes=5), ANCHOR + timedelta(minutes=10)),  # strictly after
        (ANCHOR + timedelta(minutes=5, microseconds=1), ANCHOR + timedelta(minutes=10)),
        (ANCHOR + timedelta(days=365, seconds=1), ANCHOR + timedelta(days=365, minutes=5)),
    ],
)
def test_next_grid_point(after: datetime, expected: datetime) -> None:
    assert every("5m").next_fire_after(after) == expected


def test_grid_is_elapsed_time_across_a_dst_change() -> None:
    # Anchor and `after` share a tzinfo, where Python subtracts wall times;
    # the grid must still be computed in elapsed time.
    anchor = datetime(2024, 3, 30, 12, 0, tzinfo=BERLIN)
    after = datetime(2024, 3, 31, 12, 0, tzinfo=BERLIN)  # 23 elapsed hours later

    fire = every("2h", anchor).next_fire_after(after)

    assert fire == datetime(2024, 3, 31, 11, 0, tzinfo=UTC)  # 13:00 CEST, 24 h after the anchor
    assert fire is not None
    assert fire.tzinfo is UTC


def test_anchor_is_stored_in_utc() -> None:
    schedule = every("1h", datetime(2025, 7, 1, 14, 0, tzinfo=BERLIN))

    assert schedule.anchor == datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
    assert schedule.anchor.tzinfo is UTC


@pytest.mark.timeout(5)
def test_a_job_down_for_centuries_is_computed_not_looped() -> None:
    schedule = every("1s")
    after = datetime(2900, 6, 1, 0, 0, 0, 1, tzinfo=UTC)

    assert schedule.next_fire_after(after) == datetime(2900, 6, 1, 0, 0, 1, tzinfo=UTC)


def test_past_year_9999_gives_none() -> None:
    assert every("1h").next_fire_after(datetime(9999, 12, 31, 23, 30, tzinfo=UTC)) is None


def test_naive_after_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        every("1h").next_fire_after(datetime(2025, 1, 1))


def test_direct_construction_checks_its_invariants() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        IntervalSchedule("@every 1s", BERLIN, timedelta(seconds=1), datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="at least one second"):
        IntervalSchedule("@every 1ms", BERLIN, timedelta(milliseconds=1), ANCHOR)
