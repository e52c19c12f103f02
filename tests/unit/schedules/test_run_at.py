"""One-time run_at values."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from jobsched.core.errors import InvalidScheduleError
from jobsched.schedules import parse_run_at


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-06-01T09:30:00Z", datetime(2025, 6, 1, 9, 30, tzinfo=UTC)),
        ("2025-06-01T09:30:00+02:00", datetime(2025, 6, 1, 7, 30, tzinfo=UTC)),
        ("2025-06-01 09:30-04:00", datetime(2025, 6, 1, 13, 30, tzinfo=UTC)),
        ("2025-06-01T09:30:00.123456Z", datetime(2025, 6, 1, 9, 30, 0, 123456, tzinfo=UTC)),
        ("  2025-06-01T09:30:00Z\n", datetime(2025, 6, 1, 9, 30, tzinfo=UTC)),
        ("20250601T093000Z", datetime(2025, 6, 1, 9, 30, tzinfo=UTC)),
        (
            datetime(2025, 6, 1, 9, 30, tzinfo=ZoneInfo("Europe/Berlin")),
            datetime(2025, 6, 1, 7, 30, tzinfo=UTC),
        ),
    ],
)
def test_values_with_an_offset_become_utc(value: str | datetime, expected: datetime) -> None:
    result = parse_run_at(value)

    assert result == expected
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2025-06-01T09:30:00", "has no UTC offset"),
        ("2025-06-01", "has no UTC offset"),
        (datetime(2025, 6, 1, 9, 30), "has no UTC offset"),
        ("", "is not an ISO 8601 timestamp"),
        ("tomorrow", "is not an ISO 8601 timestamp"),
        ("2025-13-01T00:00:00Z", "is not an ISO 8601 timestamp"),
        ("2025-06-01T25:00:00Z", "is not an ISO 8601 timestamp"),
        ("1717228200", "is not an ISO 8601 timestamp"),
    ],
)
def test_naive_or_malformed_values_blame_the_run_at_field(
    value: str | datetime, message: str
) -> None:
    with pytest.raises(InvalidScheduleError) as raised:
        parse_run_at(value)

    assert raised.value.field == "run_at"
    assert message in raised.value.message
