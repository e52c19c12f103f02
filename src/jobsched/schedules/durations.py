"""Go-style durations (``"1h30m"``), as used by ``@every``."""

from __future__ import annotations

import re
from datetime import timedelta
from fractions import Fraction

from jobsched.core.errors import InvalidScheduleError

_NANOSECONDS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign, accepted by Go
    "\u03bcs": 1_000,  # Greek small letter mu, accepted by Go
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_NANOSECONDS_PER_SECOND = 1_000_000_000
# Go's time.Duration is an int64 of nanoseconds (about 292 years); mirror its
# limit so an expression accepted here is also valid for Go tooling and vice versa.
_MAXIMUM_NANOSECONDS = 2**63 - 1
# Longer texts are never sensible durations; the cap also keeps huge digit
# strings away from int/Fraction conversion.
_MAXIMUM_TEXT_LENGTH = 64
_COMPONENT = re.compile(r"(?P<number>[0-9]*(?:\.[0-9]*)?)(?P<unit>[^0-9.]*)")
_UNIT_HINT = "use h, m, s, ms, us or ns"


def parse_duration(text: str) -> timedelta:
    """Return the duration written in Go's ``time.ParseDuration`` syntax.

    The text is a sequence of decimal numbers, each with an optional fraction
    and a required unit (``h``, ``m``, ``s``, ``ms``, ``us``/``µs``, ``ns``),
    optionally signed: ``"30s"``, ``"5m"``, ``"1h30m"``, ``"1.5h"``,
    ``"2000ms"``. Units are case-sensitive and spaces are not allowed, as in Go.

    Because it serves ``@every``, the result must also be positive, a whole
    number of seconds and at least one second. Any violation raises
    ``InvalidScheduleError(field="schedule")`` saying which rule was broken.
    Arithmetic is exact (no floating point), so ``"0.1h"`` is exactly 360 s.
    """
    if len(text) > _MAXIMUM_TEXT_LENGTH:
        raise _bad_duration(text, f"longer than {_MAXIMUM_TEXT_LENGTH} characters")
    negative, body = _split_sign(text)
    nanoseconds = _total_nanoseconds(text, body)
    if negative or nanoseconds == 0:
        raise _bad_duration(text, "must be positive")
    if nanoseconds > _MAXIMUM_NANOSECONDS:
        raise _bad_duration(text, "too large (at most about 292 years)")
    if nanoseconds < _NANOSECONDS_PER_SECOND:
        raise _bad_duration(text, "must be at least 1s")
    whole_seconds, remainder = divmod(nanoseconds, _NANOSECONDS_PER_SECOND)
    if remainder:
        raise _bad_duration(text, "must be a whole number of seconds")
    return timedelta(seconds=whole_seconds)


def _split_sign(text: str) -> tuple[bool, str]:
    if text[:1] in ("+", "-"):
        return text[0] == "-", text[1:]
    return False, text


def _total_nanoseconds(text: str, body: str) -> Fraction:
    if body == "":
        raise _bad_duration(text, f"empty; write a number and a unit such as '30s' ({_UNIT_HINT})")
    if body == "0":
        return Fraction(0)  # Go accepts a bare zero without a unit
    if any(character.isspace() for character in body):
        raise _bad_duration(text, "must not contain spaces (write '1h30m', not '1h 30m')")
    total = Fraction(0)
    for match in _COMPONENT.finditer(body):
        if match.group():  # skip the empty match finditer reports at the end of the text
            total += _component_nanoseconds(text, match["number"], match["unit"])
    return total


def _component_nanoseconds(text: str, number: str, unit: str) -> Fraction:
    if not any(character.isdigit() for character in number):
        raise _bad_duration(text, f"expected a number before {unit!r}")
    if unit == "":
        raise _bad_duration(text, f"missing unit after {number!r} ({_UNIT_HINT})")
    if unit in ("d", "w", "y"):
        raise _bad_duration(
            text, f"unknown unit {unit!r}: Go durations stop at hours; write '24h' for a day"
        )
    if unit not in _NANOSECONDS_PER_UNIT:
        raise _bad_duration(text, f"unknown unit {unit!r} ({_UNIT_HINT})")
    return Fraction(number) * _NANOSECONDS_PER_UNIT[unit]


def _bad_duration(text: str, reason: str) -> InvalidScheduleError:
    return InvalidScheduleError("schedule", f"bad duration {text!r}: {reason}")
