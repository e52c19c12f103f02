"""Go-style durations for @every."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobsched.core.errors import InvalidScheduleError
from jobsched.schedules import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("1s", timedelta(seconds=1)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h0m30s", timedelta(hours=1, seconds=30)),
        ("90m", timedelta(minutes=90)),
        ("1.5h", timedelta(minutes=90)),
        (".5m", timedelta(seconds=30)),
        ("0.1h", timedelta(minutes=6)),
        ("1.m", timedelta(minutes=1)),
        ("2000ms", timedelta(seconds=2)),
        ("1500ms500ms", timedelta(seconds=2)),
        ("3000000us", timedelta(seconds=3)),
        ("1000000\u00b5s", timedelta(seconds=1)),  # micro sign
        ("1000000\u03bcs", timedelta(seconds=1)),  # Greek mu
        ("1000000000ns", timedelta(seconds=1)),
        ("+5m", timedelta(minutes=5)),
        ("30m30m", timedelta(hours=1)),  # Go allows repeated units
        ("24h", timedelta(days=1)),
        ("2562047h", timedelta(hours=2562047)),  # just under Go's int64 limit
    ],
)
def test_valid_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("+", "empty"),
        ("0", "must be positive"),
        ("0s", "must be positive"),
        ("0h0m", "must be positive"),
        ("-5m", "must be positive"),
        ("-0s", "must be positive"),
        ("5", "missing unit after '5'"),
        ("1h30", "missing unit after '30'"),
        ("5x", "unknown unit 'x'"),
        ("5M", "unknown unit 'M'"),  # units are case-sensitive, as in Go
        ("5H", "unknown unit 'H'"),
        ("2d", "write '24h' for a day"),
        ("1w", "unknown unit 'w'"),
        ("h", "expected a number before 'h'"),
        (".h", "expected a number before 'h'"),
        ("1.2.3s", "missing unit after '1.2'"),
        ("1e3s", "unknown unit 'e'"),
        ("1h 30m", "must not contain spaces"),
        (" 5m", "must not contain spaces"),
        ("500ms", "must be at least 1s"),
        ("999999us", "must be at least 1s"),
        ("1.5s", "whole number of seconds"),
        ("1s500ms", "whole number of seconds"),
        ("2562048h", "too large"),
        ("9" * 65 + "h", "longer than 64 characters"),
        ("\u0665s", "expected a number"),  # Arabic-Indic digit five
        ("five minutes", "bad duration"),
    ],
)
def test_invalid_durations(text: str, message: str) -> None:
    with pytest.raises(InvalidScheduleError) as raised:
        parse_duration(text)

    assert raised.value.field == "schedule"
    assert message in raised.value.message
    assert raised.value.message.startswith(f"bad duration {text!r}")
