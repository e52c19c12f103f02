"""Timezone names."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from jobsched.core.errors import InvalidScheduleError
from jobsched.schedules import parse_timezone


@pytest.mark.parametrize(
    "name",
    [
        "UTC",
        "Etc/UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "Etc/GMT+5",
        "America/Argentina/Buenos_Aires",
    ],
)
def test_iana_names_are_accepted(name: str) -> None:
    assert parse_timezone(name) == ZoneInfo(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        " ",
        "UTC ",
        "Mars/Olympus_Mons",
        "../etc",
        "../../etc/passwd",
        "/etc/passwd",
        "/usr/share/zoneinfo/UTC",
        "America",
        "America/",
        "Europe//Berlin",
        ".",
        "localtime",
        "posixrules",
        "Europe/Berlin\x00",
        "a" * 300,
        "+02:00",
    ],
)
def test_unknown_names_blame_the_timezone_field(name: str) -> None:
    with pytest.raises(InvalidScheduleError) as raised:
        parse_timezone(name)

    assert raised.value.field == "timezone"
    assert "unknown timezone" in raised.value.message


def test_wrong_case_suggests_the_right_name() -> None:
    with pytest.raises(InvalidScheduleError) as raised:
        parse_timezone("europe/berlin")

    assert raised.value.message == "unknown timezone 'europe/berlin': did you mean 'Europe/Berlin'?"
