"""Reading the fields of a cron expression into sets of allowed values.

The syntax is classic (Vixie/Debian) cron with an optional seconds field:
each field is a comma-separated list of terms, and a term is ``*``, a value,
a range ``a-b``, or any of those with a step: ``*/15``, ``0-30/10``, ``5/20``
(``a/n`` means ``a-max/n``, as in cronsim, robfig/cron and Quartz). Months and
days of the week also accept three-letter English names in any case
(``JAN``..``DEC``, ``SUN``..``SAT``); day-of-week 0 and 7 are both Sunday.
Quartz extensions (``?``, ``L``, ``W``, ``#``) are rejected.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from jobsched.core.errors import InvalidScheduleError

# Spelled out rather than taken from ``calendar``, whose names follow the locale.
_MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_MONTH_NUMBERS = {name[:3].upper(): number for number, name in enumerate(_MONTH_NAMES, start=1)}
_WEEKDAY_NUMBERS = {
    name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))
}
# February counts as 29 days: a schedule that fires only in leap years still fires.
_LONGEST_MONTH_DAYS = {month: calendar.monthrange(2000, month)[1] for month in range(1, 13)}
# Values are at most two digits; the cap keeps huge digit strings away from int().
_MAXIMUM_NUMBER_LENGTH = 4
_DIGITS = re.compile(r"[0-9]+")
_LAST_OR_WEEKDAY = re.compile(r"[0-9]*L|LW|[0-9]+W")


@dataclass(frozen=True)
class CronFieldSpec:
    """One position in a cron expression: its name, value range and symbolic names."""

    name: str
    minimum: int
    maximum: int
    names: Mapping[str, int] = field(default_factory=dict)
    largest_step: int = 0  # 0 means "the number of values in the range"

    def step_limit(self) -> int:
        """Largest step that still selects something other than the first value alone."""
        return self.largest_step or self.maximum - self.minimum + 1

    def range_text(self) -> str:
        """The allowed values, as error messages state them."""
        text = f"{self.minimum}-{self.maximum}"
        if self.names:
            text += f" or {next(iter(self.names))}-{list(self.names)[-1]}"
        return text


SECOND = CronFieldSpec("second", 0, 59)
MINUTE = CronFieldSpec("minute", 0, 59)
HOUR = CronFieldSpec("hour", 0, 23)
DAY_OF_MONTH = CronFieldSpec("day-of-month", 1, 31)
MONTH = CronFieldSpec("month", 1, 12, _MONTH_NUMBERS)
# 7 is accepted as a second Sunday, but a step of 7 already reaches every weekday once.
DAY_OF_WEEK = CronFieldSpec("day-of-week", 0, 7, _WEEKDAY_NUMBERS, largest_step=7)
_FIELD_SPECS = (SECOND, MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK)


@dataclass(frozen=True)
class CronFields:
    """The parsed, validated fields of a cron expression.

    Day matching follows classic cron: when the day-of-month and the
    day-of-week fields are both restricted (neither starts with ``*``), a day
    matches if EITHER matches (``0 0 1 * MON`` fires on the 1st and on every
    Monday); otherwise both must match (``0 0 */2 * MON`` fires on odd-numbered
    days that are Mondays).
    """

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday .. 6 = Saturday (7 folded into 0)
    days_match_either: bool  # the classic OR rule above applies
    minute_or_hour_is_wildcard: bool  # the minute or hour field starts with "*"
    cronsim_expression: str  # six numeric fields cronsim reads exactly as we do


@dataclass(frozen=True)
class _ParsedField:
    values: frozenset[int]
    canonical_text: str


def parse_cron_fields(text: str) -> CronFields:
    """Parse a 5-field (``minute hour day-of-month month day-of-week``) or
    6-field (``second minute hour day-of-month month day-of-week``) expression.

    Raises ``InvalidScheduleError(field="schedule")`` naming the bad field,
    its text and the rule it breaks, or saying why the expression can never
    fire (``0 0 30 2 *``).
    """
    texts = text.split()
    if len(texts) == 5:
        texts.insert(0, "0")
    elif len(texts) != 6:
        raise InvalidScheduleError(
            "schedule",
            f"expected 5 fields (minute hour day-of-month month day-of-week) or 6 with "
            f"seconds first, got {len(texts)} in {text!r}",
        )
    parsed = [_parse_field(part, spec) for part, spec in zip(texts, _FIELD_SPECS, strict=True)]
    second, minute, hour, day_of_month, month, day_of_week = parsed
    days_match_either = not texts[3].startswith("*") and not texts[5].startswith("*")
    if not days_match_either:
        _ensure_day_of_month_exists(day_of_month.values, month.values, texts[3])
    return CronFields(
        seconds=second.values,
        minutes=minute.values,
        hours=hour.values,
        days_of_month=day_of_month.values,
        months=month.values,
        days_of_week=frozenset(value % 7 for value in day_of_week.values),
        days_match_either=days_match_either,
        minute_or_hour_is_wildcard=texts[1].startswith("*") or texts[2].startswith("*"),
        cronsim_expression=" ".join(part.canonical_text for part in parsed),
    )


def _ensure_day_of_month_exists(
    days_of_month: frozenset[int], months: frozenset[int], field_text: str
) -> None:
    # Under the AND rule a (month, day) pair that exists falls on every weekday
    # within 28 years, so the only schedules that never fire are those whose
    # days do not exist in any chosen month.
    if min(days_of_month) <= max(_LONGEST_MONTH_DAYS[month] for month in months):
        return
    month_names = [_MONTH_NAMES[month - 1] for month in sorted(months)]
    listed = month_names[0] if len(month_names) == 1 else ", ".join(month_names[:-1])
    if len(month_names) > 1:
        listed += f" or {month_names[-1]}"
    raise InvalidScheduleError(
        "schedule", f"never fires: day-of-month {field_text!r} does not occur in {listed}"
    )


def _parse_field(text: str, spec: CronFieldSpec) -> _ParsedField:
    values: set[int] = set()
    canonical_terms: list[str] = []
    for term in text.split(","):
        term_values, canonical_term = _parse_term(term, spec, text)
        values.update(term_values)
        canonical_terms.append(canonical_term)
    return _ParsedField(frozenset(values), ",".join(canonical_terms))


def _parse_term(term: str, spec: CronFieldSpec, field_text: str) -> tuple[range, str]:
    if term == "":
        raise _bad_field(spec, field_text, "empty item in the list")
    base, slash, step_text = term.partition("/")
    step = _parse_step(step_text, spec, field_text) if slash else None
    start, end = _parse_base(base, spec, field_text, stepped=step is not None)
    return range(start, end + 1, step or 1), _canonical_term(base == "*", start, end, step)


def _canonical_term(is_star: bool, start: int, end: int, step: int | None) -> str:
    # Numeric and explicit, so cronsim cannot read it differently (cronsim
    # treats "5-5/2" as "5/2"); a leading "*" is kept because cron's
    # day-matching and DST rules depend on it.
    step_suffix = "" if step is None else f"/{step}"
    if is_star:
        return "*" + step_suffix
    if start == end:
        return str(start)
    return f"{start}-{end}{step_suffix}"


def _parse_step(step_text: str, spec: CronFieldSpec, field_text: str) -> int:
    limit = spec.step_limit()
    reason = f"step {step_text!r} must be a number from 1 to {limit}"
    if not _DIGITS.fullmatch(step_text) or len(step_text) > _MAXIMUM_NUMBER_LENGTH:
        raise _bad_field(spec, field_text, reason)
    step = int(step_text)
    if not 1 <= step <= limit:
        raise _bad_field(spec, field_text, reason)
    return step


def _parse_base(
    base: str, spec: CronFieldSpec, field_text: str, *, stepped: bool
) -> tuple[int, int]:
    if base == "*":
        return spec.minimum, spec.maximum
    if "-" in base:
        start_text, _, end_text = base.partition("-")
        if not start_text or not end_text:
            raise _bad_field(spec, field_text, f"incomplete range {base!r}")
        start = _parse_value(start_text, spec, field_text)
        end = _parse_value(end_text, spec, field_text)
        if start > end:
            raise _bad_field(
                spec, field_text, f"range {base!r} runs backwards; ranges do not wrap around"
            )
        return start, end
    value = _parse_value(base, spec, field_text)
    return (value, spec.maximum) if stepped else (value, value)


def _parse_value(item: str, spec: CronFieldSpec, field_text: str) -> int:
    named_value = spec.names.get(item.upper())
    if named_value is not None:
        return named_value
    if not _DIGITS.fullmatch(item):
        raise _bad_field(spec, field_text, f"{item!r} is not a {spec.name}" + _hint(item))
    if len(item) > _MAXIMUM_NUMBER_LENGTH or not spec.minimum <= int(item) <= spec.maximum:
        raise _bad_field(spec, field_text, f"{item} is out of range, must be {spec.range_text()}")
    return int(item)


def _hint(item: str) -> str:
    if item == "?":
        return "; '?' is not supported, use '*'"
    if "#" in item:
        return "; the nth-weekday form ('#') is not supported"
    if _LAST_OR_WEEKDAY.fullmatch(item.upper()):
        return "; the 'L' and 'W' forms are not supported"
    return ""


def _bad_field(spec: CronFieldSpec, field_text: str, reason: str) -> InvalidScheduleError:
    return InvalidScheduleError("schedule", f"bad {spec.name} field {field_text!r}: {reason}")
