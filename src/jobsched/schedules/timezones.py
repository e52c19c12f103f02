"""Turning a user's timezone name into a ``ZoneInfo``."""

from __future__ import annotations

import functools
import zoneinfo
from zoneinfo import ZoneInfo

from jobsched.core.errors import InvalidScheduleError

# These keys exist in some TZPATH directories but describe the host, not a
# place: a job must mean the same thing on every machine that runs it.
_HOST_SPECIFIC_KEYS = frozenset({"localtime", "posixrules"})


@functools.cache
def _known_zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - _HOST_SPECIFIC_KEYS


@functools.cache
def _zone_names_by_folded_case() -> dict[str, str]:
    return {name.casefold(): name for name in _known_zone_names()}


def parse_timezone(name: str) -> ZoneInfo:
    """Return the ``ZoneInfo`` for an IANA zone name such as ``"Europe/Berlin"`` or ``"UTC"``.

    Only names in the IANA database are accepted, spelled exactly (names are
    case-sensitive); anything else, including ``""``, paths such as
    ``"../etc"`` and host aliases such as ``"localtime"``, raises
    ``InvalidScheduleError(field="timezone")``. The message suggests the
    correctly cased name when the only problem is case.
    """
    if name in _known_zone_names():
        try:
            return ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass  # listed but unreadable: report it as unknown below
    raise InvalidScheduleError("timezone", _unknown_zone_message(name))


def _unknown_zone_message(name: str) -> str:
    suggestion = _zone_names_by_folded_case().get(name.casefold())
    if suggestion is not None and suggestion != name:
        return f"unknown timezone {name!r}: did you mean {suggestion!r}?"
    return f"unknown timezone {name!r}: use an IANA name such as 'UTC' or 'Europe/Berlin'"
