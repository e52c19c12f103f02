"""Schedules in words: the common shapes read as people say them; the rest as written."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobsched.schedules.describe import describe_schedule


@pytest.mark.parametrize(
    ("schedule", "timezone", "words"),
    [
        ("*/15 * * * *", "UTC", "every 15 minutes"),
        ("* * * * *", "Europe/Berlin", "every minute"),
        ("30 2 * * *", "Europe/Berlin", "at 02:30 in Europe/Berlin"),
        ("0 9,17 * * *", "UTC", "at 09:00, 17:00"),
        ("0 9 * * 1-5", "UTC", "at 09:00 on weekdays (Monday to Friday)"),
        ("0 9 * * MON,fri", "UTC", "at 09:00 on Monday, Friday"),
        ("0 9 * * 7", "UTC", "at 09:00 on Sunday"),
        ("0 */6 * * *", "UTC", "every 6 hours, at minute 0"),
        ("5 * * * *", "UTC", "every hour, at minute 5"),
        ("5 4 1,15 * *", "UTC", "at 04:05 on day 1, 15 of the month"),
        ("@daily", "America/New_York", "at 00:00 in America/New_York"),
        ("@HOURLY", "UTC", "every hour, at minute 0"),
        ("@every 15m", "Europe/Berlin", "every 15 minutes"),
        ("@every 1h30m", "UTC", "every 1 hour 30 minutes"),
        ("@every 1m", "UTC", "every minute"),
        ("@every 2h", "UTC", "every 2 hours"),
        # Shapes it does not put in words are shown as written, never guessed.
        ("0 0 1 1 *", "UTC", "cron 0 0 1 1 *"),
        ("*/10 * * * * *", "UTC", "cron */10 * * * * *"),
        ("0 9 * * 1-3", "UTC", "cron 0 9 * * 1-3"),
    ],
)
def test_describe(schedule: str, timezone: str, words: str) -> None:
    assert describe_schedule(schedule, timezone, None) == words


def test_a_one_time_job_says_when() -> None:
    moment = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert describe_schedule(None, "Europe/Berlin", moment) == "once, at 2031-05-06 07:08:09 UTC"
    assert describe_schedule(None, "UTC", None) == "once"
