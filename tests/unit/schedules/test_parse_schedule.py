"""parse_schedule: forms, normalisation, errors, and cron next-fire behaviour outside DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobsched.core.errors import InvalidScheduleError
from jobsched.schedules import (
    CronSchedule,
    IntervalSchedule,
    parse_schedule,
    preview_fire_times,
)

ANCHOR = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "expression"),
    [
        ("  0   0 * * *  ", "0 0 * * *"),
        ("0\t0\n* * *", "0 0 * * *"),
        ("@DAILY", "@daily"),
        (" @Hourly ", "@hourly"),
        ("0 0 * jan mon", "0 0 * jan mon"),
    ],
)
def test_expression_is_normalised(given: str, expression: str) -> None:
    assert parse_schedule(given).expression == expression


def test_every_keyword_is_normalised_but_the_duration_kept() -> None:
    schedule = parse_schedule("@EVERY   90m", anchor=ANCHOR)

    assert schedule.expression == "@every 90m"


@pytest.mark.parametrize(
    ("macro", "equivalent"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_macros_fire_like_their_cron_equivalent(macro: str, equivalent: str) -> None:
    after = datetime(2024, 2, 27, 13, 14, tzinfo=UTC)

    macro_fires = preview_fire_times(parse_schedule(macro, "Europe/Berlin"), after, 5)
    cron_fires = preview_fire_times(parse_schedule(equivalent, "Europe/Berlin"), after, 5)

    assert macro_fires == cron_fires


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/15 * * * *", datetime(2025, 5, 1, 10, 7), datetime(2025, 5, 1, 10, 15)),
        ("*/15 * * * *", datetime(2025, 5, 1, 10, 15), datetime(2025, 5, 1, 10, 30)),
        ("0 9 * * MON-FRI", datetime(2025, 5, 2, 9, 0), datetime(2025, 5, 5, 9, 0)),
        ("0 0 1 * MON", datetime(2025, 5, 1, 0, 0), datetime(2025, 5, 5, 0, 0)),  # OR rule
        ("0 0 */2 * MON", datetime(2025, 5, 5, 0, 0), datetime(2025, 5, 19, 0, 0)),  # AND
        ("0 0 29 2 *", datetime(2025, 1, 1), datetime(2028, 2, 29)),
        ("30 * * * * *", datetime(2025, 5, 1, 10, 0, 30), datetime(2025, 5, 1, 10, 1, 30)),
        ("@yearly", datetime(2025, 12, 31, 23, 59, 59), datetime(2026, 1, 1)),
    ],
)
def test_next_fire_after_in_utc(expression: str, after: datetime, expected: datetime) -> None:
    schedule = parse_schedule(expression)

    assert schedule.next_fire_after(after.replace(tzinfo=UTC)) == expected.replace(tzinfo=UTC)


def test_next_fire_is_strictly_after_even_within_the_same_second() -> None:
    schedule = parse_schedule("* * * * * *")
    after = datetime(2025, 5, 1, 10, 0, 0, 500_000, tzinfo=UTC)

    assert schedule.next_fire_after(after) == datetime(2025, 5, 1, 10, 0, 1, tzinfo=UTC)


def test_cron_is_read_on_the_wall_clock_of_its_zone() -> None:
    schedule = parse_schedule("0 9 * * *", "Asia/Kolkata")

    fire = schedule.next_fire_after(datetime(2025, 5, 1, tzinfo=UTC))

    assert fire == datetime(2025, 5, 1, 3, 30, tzinfo=UTC)  # 09:00 at +05:30


def test_no_fire_left_before_year_10000_gives_none() -> None:
    schedule = parse_schedule("0 0 1 1 *", "Europe/Berlin")

    assert schedule.next_fire_after(datetime(9999, 6, 1, tzinfo=UTC)) is None


def test_naive_after_is_a_programming_error() -> None:
    schedule = parse_schedule("* * * * *")

    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_fire_after(datetime(2025, 1, 1))


def test_cron_and_interval_kinds() -> None:
    cron = parse_schedule("@daily", "Europe/Berlin")
    interval = parse_schedule("@every 5m", "Europe/Berlin", anchor=ANCHOR)

    assert isinstance(cron, CronSchedule)
    assert cron.fires_at_fixed_local_times
    assert cron.timezone == ZoneInfo("Europe/Berlin")
    assert isinstance(interval, IntervalSchedule)
    assert interval.every == timedelta(minutes=5)
    assert interval.timezone == ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("@foo", "unknown macro '@foo'"),
        ("@everyday", "unknown macro '@everyday'"),
        ("@every", "@every needs a duration"),
        ("@every 0s", "must be positive"),
        ("@every 0", "must be positive"),
        ("@every -5m", "must be positive"),
        ("@every 500ms", "must be at least 1s"),
        ("@every 1.5s", "whole number of seconds"),
        ("@every 5x", "unknown unit 'x'"),
        ("@every 1h 30m", "must not contain spaces"),
        ("@every five minutes", "bad duration"),
        ("61 * * * *", "bad minute field '61'"),
        ("* * * *", "expected 5 fields"),
        ("0 0 31 2 *", "never fires"),
        ("0 0 * * * * *", "got 7"),
        ("0 " * 600, "longer than 1024 characters"),
    ],
)
def test_bad_expressions_blame_the_schedule_field(expression: str, message: str) -> None:
    with pytest.raises(InvalidScheduleError) as raised:
        parse_schedule(expression, "Europe/Berlin", anchor=ANCHOR)

    assert raised.value.field == "schedule"
    assert message in raised.value.message


@pytest.mark.parametrize("expression", ["0 0 * * *", "@daily", "@every 5m"])
def test_bad_timezone_blames_the_timezone_field(expression: str) -> None:
    with pytest.raises(InvalidScheduleError) as raised:
        parse_schedule(expression, "Mars/Olympus_Mons", anchor=ANCHOR)

    assert raised.value.field == "timezone"


def test_the_expression_is_checked_before_the_timezone() -> None:
    with pytest.raises(InvalidScheduleError) as raised:
        parse_schedule("61 * * * *", "Mars/Olympus_Mons")

    assert raised.value.field == "schedule"


def test_every_requires_an_aware_anchor() -> None:
    with pytest.raises(ValueError, match="anchor is required"):
        parse_schedule("@every 5m")
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("@every 5m", anchor=datetime(2025, 1, 1))


def test_anchor_is_ignored_by_cron_schedules() -> None:
    assert isinstance(parse_schedule("@daily", anchor=ANCHOR), CronSchedule)
