"""Mapping wall-clock times to instants around offset changes."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from jobsched.schedules.wall_clock import end_of_gap, instants_of_wall_time, repeated_period

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")


@pytest.mark.parametrize(
    ("wall", "zone", "instants"),
    [
        (datetime(2024, 6, 1, 12, 0), BERLIN, [datetime(2024, 6, 1, 10, 0, tzinfo=UTC)]),
        (datetime(2024, 3, 31, 2, 30), BERLIN, []),
        (
            datetime(2024, 10, 27, 2, 30),
            BERLIN,
            [datetime(2024, 10, 27, 0, 30, tzinfo=UTC), datetime(2024, 10, 27, 1, 30, tzinfo=UTC)],
        ),
        (
            datetime(2024, 11, 3, 1, 0),
            NEW_YORK,
            [datetime(2024, 11, 3, 5, 0, tzinfo=UTC), datetime(2024, 11, 3, 6, 0, tzinfo=UTC)],
        ),
        (datetime(2024, 11, 3, 2, 0), NEW_YORK, [datetime(2024, 11, 3, 7, 0, tzinfo=UTC)]),
        (datetime(2024, 10, 6, 2, 15), LORD_HOWE, []),
        (datetime(2024, 6, 1, 12, 0), ZoneInfo("UTC"), [datetime(2024, 6, 1, 12, 0, tzinfo=UTC)]),
    ],
)
def test_instants_of_wall_time(wall: datetime, zone: ZoneInfo, instants: list[datetime]) -> None:
    assert list(instants_of_wall_time(wall, zone)) == instants


@pytest.mark.parametrize(
    ("wall", "zone", "gap_end"),
    [
        (datetime(2024, 3, 31, 2, 0), BERLIN, datetime(2024, 3, 31, 1, 0, tzinfo=UTC)),
        (datetime(2024, 3, 31, 2, 59, 59), BERLIN, datetime(2024, 3, 31, 1, 0, tzinfo=UTC)),
        (datetime(2024, 3, 10, 2, 30), NEW_YORK, datetime(2024, 3, 10, 7, 0, tzinfo=UTC)),
        (datetime(2024, 10, 6, 2, 15), LORD_HOWE, datetime(2024, 10, 5, 15, 30, tzinfo=UTC)),
    ],
)
def test_end_of_gap_is_the_clock_change(wall: datetime, zone: ZoneInfo, gap_end: datetime) -> None:
    assert end_of_gap(wall, zone) == gap_end


@pytest.mark.parametrize(
    ("wall", "zone", "period"),
    [
        (
            datetime(2024, 10, 27, 2, 30),
            BERLIN,
            (datetime(2024, 10, 27, 2, 0), datetime(2024, 10, 27, 3, 0)),
        ),
        (
            datetime(2024, 11, 3, 1, 0),
            NEW_YORK,
            (datetime(2024, 11, 3, 1, 0), datetime(2024, 11, 3, 2, 0)),
        ),
        (
            datetime(2024, 4, 7, 1, 45),
            LORD_HOWE,
            (datetime(2024, 4, 7, 1, 30), datetime(2024, 4, 7, 2, 0)),
        ),
    ],
)
def test_repeated_period_bounds(
    wall: datetime, zone: ZoneInfo, period: tuple[datetime, datetime]
) -> None:
    assert repeated_period(wall, zone) == period


@pytest.mark.timeout(5)
@pytest.mark.parametrize("microsecond", [1, 500_000, 999_999])
def test_sub_second_wall_times_are_handled(microsecond: int) -> None:
    # Regression: bisection between a floored and an unfloored end never finished.
    repeated = datetime(2024, 11, 3, 1, 10, 0, microsecond)
    skipped = datetime(2024, 3, 10, 2, 10, 0, microsecond)

    assert repeated_period(repeated, NEW_YORK) == (
        datetime(2024, 11, 3, 1, 0),
        datetime(2024, 11, 3, 2, 0),
    )
    assert end_of_gap(skipped, NEW_YORK) == datetime(2024, 3, 10, 7, 0, tzinfo=UTC)
