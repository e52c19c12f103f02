"""Cron schedules across daylight-saving changes (Debian cron's rules)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from jobsched.schedules import Schedule, parse_schedule

SPRING_FORWARD_DAYS = [
    ("Europe/Berlin", date(2024, 3, 31)),
    ("Europe/Berlin", date(2025, 3, 30)),
    ("America/New_York", date(2024, 3, 10)),
    ("America/New_York", date(2025, 3, 9)),
]
EVEN_HOURS_FROM_4 = [(hour, 0) for hour in range(4, 24, 2)]
FALL_BACK_DAYS = [
    ("Europe/Berlin", date(2024, 10, 27)),
    ("Europe/Berlin", date(2025, 10, 26)),
    ("America/New_York", date(2024, 11, 3)),
    ("America/New_York", date(2025, 11, 2)),
]


def fires_on_local_day(schedule: Schedule, zone_name: str, day: date) -> list[datetime]:
    """Fire times from local midnight (inclusive) to the next local midnight (exclusive)."""
    zone = ZoneInfo(zone_name)
    start = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
    fires = []
    cursor = schedule.next_fire_after(start - timedelta(microseconds=1))
    while cursor is not None and cursor < end:
        fires.append(cursor)
        cursor = schedule.next_fire_after(cursor)
    return fires


def local(zone_name: str, day: date, hour: int, minute: int, *, fold: int = 0) -> datetime:
    wall = datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(zone_name))
    return wall.replace(fold=fold).astimezone(UTC)


@pytest.mark.parametrize(("zone_name", "day"), SPRING_FORWARD_DAYS)
@pytest.mark.parametrize("expression", ["30 2 * * *", "0 30 2 * * *"])
def test_skipped_fixed_time_fires_once_at_the_end_of_the_gap(
    zone_name: str, day: date, expression: str
) -> None:
    schedule = parse_schedule(expression, zone_name)

    fires = fires_on_local_day(schedule, zone_name, day)

    assert fires == [local(zone_name, day, 3, 0)]


@pytest.mark.parametrize(
    ("zone_name", "day", "expression", "hour"),
    [
        (zone_name, day, expression, hour)
        for zone_name, day in FALL_BACK_DAYS
        for hour in ([2] if zone_name == "Europe/Berlin" else [1])
        for expression in [f"30 {hour} * * *", f"0 30 {hour} * * *"]
    ],
)
def test_repeated_fixed_time_fires_once_at_its_first_occurrence(
    zone_name: str, day: date, expression: str, hour: int
) -> None:
    schedule = parse_schedule(expression, zone_name)

    fires = fires_on_local_day(schedule, zone_name, day)

    assert fires == [local(zone_name, day, hour, 30, fold=0)]


@pytest.mark.parametrize(
    ("zone_name", "day", "expected_count"),
    [(zone_name, day, 23) for zone_name, day in SPRING_FORWARD_DAYS]
    + [(zone_name, day, 25) for zone_name, day in FALL_BACK_DAYS],
)
@pytest.mark.parametrize("expression", ["0 * * * *", "@hourly", "0 0 * * * *"])
def test_wildcard_hour_follows_elapsed_time(
    zone_name: str, day: date, expected_count: int, expression: str
) -> None:
    schedule = parse_schedule(expression, zone_name)

    fires = fires_on_local_day(schedule, zone_name, day)

    assert len(fires) == expected_count
    assert all(later - earlier == timedelta(hours=1) for earlier, later in pairwise(fires))


@pytest.mark.parametrize(
    ("zone_name", "day", "expected_count"),
    [(zone_name, day, 92) for zone_name, day in SPRING_FORWARD_DAYS]
    + [(zone_name, day, 100) for zone_name, day in FALL_BACK_DAYS],
)
def test_every_fifteen_minutes_is_evenly_spaced_in_utc(
    zone_name: str, day: date, expected_count: int
) -> None:
    schedule = parse_schedule("*/15 * * * *", zone_name)

    fires = fires_on_local_day(schedule, zone_name, day)

    assert len(fires) == expected_count
    assert all(later - earlier == timedelta(minutes=15) for earlier, later in pairwise(fires))
    assert all(fire.tzinfo is UTC for fire in fires)


@pytest.mark.parametrize(("zone_name", "day"), SPRING_FORWARD_DAYS)
def test_daily_job_at_an_unaffected_time_keeps_its_local_time(zone_name: str, day: date) -> None:
    schedule = parse_schedule("0 9 * * *", zone_name)

    fires = [
        fire
        for offset in (-1, 0, 1)
        for fire in fires_on_local_day(schedule, zone_name, day + timedelta(days=offset))
    ]

    assert [fire.astimezone(ZoneInfo(zone_name)).hour for fire in fires] == [9, 9, 9]
    assert fires[1] - fires[0] == timedelta(hours=23)


@pytest.mark.parametrize(
    ("zone_name", "day", "expression", "expected_local_times"),
    [
        # Every skipped wall time collapses into the one fire at the end of the gap.
        ("Europe/Berlin", date(2024, 3, 31), "0,30 2 * * *", [(3, 0)]),
        ("Europe/Berlin", date(2024, 3, 31), "0 2,3 * * *", [(3, 0)]),
        ("Europe/Berlin", date(2024, 3, 31), "0 1-3 * * *", [(1, 0), (3, 0)]),
        ("America/New_York", date(2025, 3, 9), "15,45 2 * * *", [(3, 0)]),
        # Wildcard minute: the skipped hour simply does not happen.
        ("Europe/Berlin", date(2024, 3, 31), "*/30 2 * * *", []),
        (
            "America/New_York",
            date(2024, 3, 10),
            "0 */2 * * *",
            [(0, 0), *((h, 0) for h in range(4, 24, 2))],
        ),
    ],
)
def test_spring_forward_table(
    zone_name: str,
    day: date,
    expression: str,
    expected_local_times: list[tuple[int, int]],
) -> None:
    schedule = parse_schedule(expression, zone_name)
    zone = ZoneInfo(zone_name)

    fires = fires_on_local_day(schedule, zone_name, day)

    local_times = [(fire.astimezone(zone).hour, fire.astimezone(zone).minute) for fire in fires]
    assert local_times == expected_local_times


@pytest.mark.parametrize(
    ("zone_name", "day", "expression", "expected_utc_offsets_hours"),
    [
        # Wildcard minute in the repeated hour fires in both passes.
        ("America/New_York", date(2024, 11, 3), "*/30 1 * * *", [-4, -4, -5, -5]),
        # Fixed minutes and hours fire in the first pass only.
        ("America/New_York", date(2024, 11, 3), "0,30 1 * * *", [-4, -4]),
        ("Europe/Berlin", date(2025, 10, 26), "0-59/20 2 * * *", [2, 2, 2]),
        ("Europe/Berlin", date(2025, 10, 26), "*/20 2 * * *", [2, 2, 2, 1, 1, 1]),
    ],
)
def test_fall_back_table(
    zone_name: str, day: date, expression: str, expected_utc_offsets_hours: list[int]
) -> None:
    schedule = parse_schedule(expression, zone_name)
    zone = ZoneInfo(zone_name)

    fires = fires_on_local_day(schedule, zone_name, day)

    offsets = [f.astimezone(zone).utcoffset() for f in fires]
    assert offsets == [timedelta(hours=hours) for hours in expected_utc_offsets_hours]


@pytest.mark.timeout(5)
@pytest.mark.parametrize("microsecond", [0, 1, 999_999])
def test_restarting_inside_the_second_pass_never_goes_back_in_time(microsecond: int) -> None:
    # cronsim alone answers 01:45 EDT here, which is before `after`.
    schedule = parse_schedule("45 1 * * *", "America/New_York")
    after = local("America/New_York", date(2024, 11, 3), 1, 40, fold=1)
    after += timedelta(microseconds=microsecond)

    assert schedule.next_fire_after(after) == local("America/New_York", date(2024, 11, 4), 1, 45)


@pytest.mark.parametrize(
    ("after_hour", "after_minute", "after_fold", "expected"),
    [
        (1, 10, 0, (1, 30, 0)),  # first pass: the next matching wall time
        (1, 40, 0, (1, 0, 1)),  # first pass, none left: 01:00 comes round again
        (1, 10, 1, (1, 30, 1)),  # second pass
        (1, 40, 1, (2, 0, 0)),  # second pass, none left in it
    ],
)
def test_wildcard_minute_inside_the_repeated_hour(
    after_hour: int, after_minute: int, after_fold: int, expected: tuple[int, int, int]
) -> None:
    schedule = parse_schedule("*/30 1,2 * * *", "America/New_York")
    day = date(2024, 11, 3)
    after = local("America/New_York", day, after_hour, after_minute, fold=after_fold)
    hour, minute, fold = expected

    assert schedule.next_fire_after(after) == local(
        "America/New_York", day, hour, minute, fold=fold
    )


def test_half_hour_change_does_not_lose_the_hour_after_the_gap() -> None:
    # Lord Howe Island moves from +10:30 to +11:00 at 02:00 on 2024-10-06;
    # cronsim's aware mode jumps from 00:00 straight to 06:00 here.
    schedule = parse_schedule("0 */3 * * *", "Australia/Lord_Howe")
    day = date(2024, 10, 6)

    fires = fires_on_local_day(schedule, "Australia/Lord_Howe", day)

    zone = ZoneInfo("Australia/Lord_Howe")
    assert [f.astimezone(zone).hour for f in fires] == [0, 3, 6, 9, 12, 15, 18, 21]


def test_half_hour_gap_shifts_a_fixed_time_to_its_end() -> None:
    schedule = parse_schedule("15 2 * * *", "Australia/Lord_Howe")
    day = date(2024, 10, 6)

    fires = fires_on_local_day(schedule, "Australia/Lord_Howe", day)

    assert fires == [local("Australia/Lord_Howe", day, 2, 30)]


@pytest.mark.parametrize("after_zone", ["UTC", "Asia/Tokyo", "America/Los_Angeles"])
def test_after_may_be_given_in_any_zone(after_zone: str) -> None:
    schedule = parse_schedule("30 2 * * *", "Europe/Berlin")
    after = datetime(2024, 3, 30, 12, tzinfo=UTC).astimezone(ZoneInfo(after_zone))

    fire = schedule.next_fire_after(after)

    assert fire == datetime(2024, 3, 31, 1, 0, tzinfo=UTC)
    assert fire is not None
    assert fire.tzinfo is UTC
