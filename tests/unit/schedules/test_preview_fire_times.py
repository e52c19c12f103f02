"""preview_fire_times: the next few fire times of any schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobsched.schedules import parse_schedule, preview_fire_times


def test_lists_the_next_fire_times_in_order() -> None:
    schedule = parse_schedule("0 9 * * MON", "Europe/Berlin")
    after = datetime(2025, 3, 20, tzinfo=ZoneInfo("Europe/Berlin"))

    fires = preview_fire_times(schedule, after, 3)

    assert fires == [
        datetime(2025, 3, 24, 8, 0, tzinfo=UTC),  # 09:00 CET
        datetime(2025, 3, 31, 7, 0, tzinfo=UTC),  # 09:00 CEST
        datetime(2025, 4, 7, 7, 0, tzinfo=UTC),
    ]


def test_works_for_interval_schedules() -> None:
    anchor = datetime(2025, 1, 1, tzinfo=UTC)
    schedule = parse_schedule("@every 1h30m", anchor=anchor)

    fires = preview_fire_times(schedule, anchor, 3)

    assert fires == [anchor + timedelta(minutes=90) * k for k in (1, 2, 3)]


def test_zero_count_gives_an_empty_list() -> None:
    assert preview_fire_times(parse_schedule("@daily"), datetime(2025, 1, 1, tzinfo=UTC), 0) == []


def test_negative_count_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        preview_fire_times(parse_schedule("@daily"), datetime(2025, 1, 1, tzinfo=UTC), -1)


def test_stops_early_when_the_schedule_runs_out() -> None:
    schedule = parse_schedule("@yearly")
    after = datetime(9997, 6, 1, tzinfo=UTC)

    fires = preview_fire_times(schedule, after, 5)

    assert fires == [datetime(9998, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)]
