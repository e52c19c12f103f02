"""Reading cron fields: value sets, the day-matching rule and the text cronsim is given."""

from __future__ import annotations

import pytest

from jobsched.core.errors import InvalidScheduleError
from jobsched.schedules.cron_fields import parse_cron_fields


@pytest.mark.parametrize(
    ("expression", "minutes"),
    [
        ("* * * * *", set(range(60))),
        ("*/15 * * * *", {0, 15, 30, 45}),
        ("5 * * * *", {5}),
        ("10-13 * * * *", {10, 11, 12, 13}),
        ("0-30/10 * * * *", {0, 10, 20, 30}),
        ("50/4 * * * *", {50, 54, 58}),  # a/n means a-max/n
        ("5-5/2 * * * *", {5}),  # cronsim would read {5, 7, 9, ...}
        ("1,2,40-42 * * * *", {1, 2, 40, 41, 42}),
        ("007 * * * *", {7}),
        ("*/60 * * * *", {0}),
    ],
)
def test_minute_values(expression: str, minutes: set[int]) -> None:
    assert parse_cron_fields(expression).minutes == minutes


def test_five_fields_fire_on_second_zero() -> None:
    assert parse_cron_fields("* * * * *").seconds == {0}


def test_six_fields_start_with_seconds() -> None:
    fields = parse_cron_fields("*/20 5 4 3 2 1")

    assert fields.seconds == {0, 20, 40}
    assert fields.minutes == {5}
    assert fields.hours == {4}
    assert fields.days_of_month == {3}
    assert fields.months == {2}
    assert fields.days_of_week == {1}


@pytest.mark.parametrize(
    ("month_field", "months"),
    [
        ("JAN", {1}),
        ("dec", {12}),
        ("Mar-May", {3, 4, 5}),
        ("jan-dec/6", {1, 7}),
        ("feb,AUG", {2, 8}),
    ],
)
def test_month_names_in_any_case(month_field: str, months: set[int]) -> None:
    assert parse_cron_fields(f"0 0 * {month_field} *").months == months


@pytest.mark.parametrize(
    ("weekday_field", "weekdays"),
    [
        ("SUN", {0}),
        ("7", {0}),
        ("0,7", {0}),
        ("mon-fri", {1, 2, 3, 4, 5}),
        ("5-7", {5, 6, 0}),
        ("*/2", {0, 2, 4, 6}),
        ("*/7", {0}),
        ("Sat", {6}),
    ],
)
def test_day_of_week_values_with_sunday_as_0_and_7(weekday_field: str, weekdays: set[int]) -> None:
    assert parse_cron_fields(f"0 0 * * {weekday_field}").days_of_week == weekdays


@pytest.mark.parametrize(
    ("expression", "days_match_either"),
    [
        ("0 0 1 * MON", True),  # both restricted: the classic OR rule
        ("0 0 1-31 * MON", True),  # restricted by text, even if every day is listed
        ("0 0 * * MON", False),
        ("0 0 1 * *", False),
        ("0 0 */2 * MON", False),  # a leading '*' counts as unrestricted
        ("0 0 1 * */2", False),
    ],
)
def test_day_matching_rule_follows_the_leading_star(
    expression: str, days_match_either: bool
) -> None:
    assert parse_cron_fields(expression).days_match_either is days_match_either


@pytest.mark.parametrize(
    ("expression", "wildcard"),
    [
        ("30 2 * * *", False),
        ("0 9-17 * * 1-5", False),
        ("0-59 1 * * *", False),
        ("0 * * * *", True),
        ("*/15 * * * *", True),
        ("*/30 2 * * *", True),
        ("0 */2 * * *", True),
        ("* 30 2 * * *", False),  # the seconds field does not decide
    ],
)
def test_minute_or_hour_wildcard_flag(expression: str, wildcard: bool) -> None:
    assert parse_cron_fields(expression).minute_or_hour_is_wildcard is wildcard


@pytest.mark.parametrize(
    ("expression", "cronsim_expression"),
    [
        ("*/15 * * * *", "0 */15 * * * *"),
        ("5-5/2 1 * JAN-mar mon-fri", "0 5 1 * 1-3 1-5"),
        ("50/4 * * * *", "0 50-59/4 * * * *"),
        ("30 0 0 1 1 SUN", "30 0 0 1 1 0"),
        ("0 0 * * 5-7", "0 0 0 * * 5-7"),
    ],
)
def test_cronsim_gets_numeric_canonical_fields(expression: str, cronsim_expression: str) -> None:
    assert parse_cron_fields(expression).cronsim_expression == cronsim_expression


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "bad minute field '61': 61 is out of range, must be 0-59"),
        ("* 24 * * *", "bad hour field '24': 24 is out of range, must be 0-23"),
        ("* * 0 * *", "bad day-of-month field '0': 0 is out of range, must be 1-31"),
        ("* * 32 * *", "bad day-of-month field '32'"),
        ("* * * 13 *", "bad month field '13': 13 is out of range, must be 1-12 or JAN-DEC"),
        ("* * * 0 *", "must be 1-12"),
        ("* * * * 8", "bad day-of-week field '8': 8 is out of range, must be 0-7 or SUN-SAT"),
        ("60 * * * * *", "bad second field '60'"),
        ("1-99999999999999999999 * * * *", "out of range"),
        ("* * * *", "expected 5 fields"),
        ("* * * * * * *", "got 7"),
        ("*/0 * * * *", "bad minute field '*/0': step '0' must be a number from 1 to 60"),
        ("*/61 * * * *", "step '61' must be a number from 1 to 60"),
        ("0 */25 * * *", "step '25' must be a number from 1 to 24"),
        ("0 0 * * */8", "step '8' must be a number from 1 to 7"),
        ("*/x * * * *", "step 'x'"),
        ("*/ * * * *", "step ''"),
        ("*/2/3 * * * *", "step '2/3'"),
        ("5-1 * * * *", "range '5-1' runs backwards"),
        ("0 0 * * FRI-MON", "range 'FRI-MON' runs backwards"),
        ("-5 * * * *", "incomplete range '-5'"),
        ("5- * * * *", "incomplete range '5-'"),
        ("1-2-3 * * * *", "'2-3' is not a minute"),
        ("1,,2 * * * *", "empty item in the list"),
        ("1, * * * *", "empty item"),
        ("a * * * *", "'a' is not a minute"),
        ("*-5 * * * *", "'*' is not a minute"),
        ("0 0 * JULY *", "'JULY' is not a month"),
        ("0 0 * * FOO", "'FOO' is not a day-of-week"),
        ("JAN 0 * * *", "'JAN' is not a minute"),
        ("0 0 ? * *", "'?' is not supported, use '*'"),
        ("0 0 * * ?", "'?' is not supported"),
        ("0 0 L * *", "the 'L' and 'W' forms are not supported"),
        ("0 0 15W * *", "the 'L' and 'W' forms are not supported"),
        ("0 0 * * 5L", "the 'L' and 'W' forms are not supported"),
        ("0 0 * * MON#2", "the nth-weekday form ('#') is not supported"),
        ("\u0661 * * * *", "is not a minute"),  # Arabic-Indic digit one
        ("0 0 31 2 *", "never fires: day-of-month '31' does not occur in February"),
        ("0 0 30 2 *", "never fires: day-of-month '30' does not occur in February"),
        ("0 0 30,31 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "does not occur in April, June, September or November"),
        ("0 0 31 2 */2", "never fires"),  # day-of-week starts with '*': AND rule
        ("0 0 0 31 FEB *", "never fires"),
    ],
)
def test_malformed_or_never_firing_expressions_are_rejected(expression: str, message: str) -> None:
    with pytest.raises(InvalidScheduleError) as raised:
        parse_cron_fields(expression)

    assert raised.value.field == "schedule"
    assert message in raised.value.message


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 31 2 MON",  # OR rule: fires on Mondays in February
        "0 0 29 2 *",  # leap years only
        "0 0 31 1-2 *",
        "0 0 */30 2 *",  # day 1 (and 31, which February lacks)
    ],
)
def test_rare_but_possible_expressions_are_accepted(expression: str) -> None:
    parse_cron_fields(expression)
