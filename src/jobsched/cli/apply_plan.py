"""What ``jobsched apply`` would change: the jobs of a file against the jobs of the API, by name.

A field the file gives is compared with the job's value (schedules in their
normal form, times as instants, ``retry`` field by field); a field it leaves out
keeps whatever value the job has. Only named jobs are managed: ``--prune``
deletes named jobs the file does not have, never jobs without a name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobsched.cli.client_errors import CliError
from jobsched.client.models import Job

# Given a schedule and a timezone, its normal form (the API's, from /schedules/preview).
Normaliser = Callable[[str, str], str]


@dataclass(frozen=True, slots=True)
class Change:
    field: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class Update:
    job: Job
    patch: dict[str, Any]
    changes: list[Change]


@dataclass
class Plan:
    create: list[dict[str, Any]] = field(default_factory=list)
    update: list[Update] = field(default_factory=list)
    delete: list[Job] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changes_anything(self) -> bool:
        return bool(self.create or self.update or self.delete)


def check_definitions(definitions: list[dict[str, Any]], path: str) -> None:
    """Every definition has a name of its own, before anything is asked of the API."""
    seen: dict[str, int] = {}
    for number, definition in enumerate(definitions, start=1):
        name = definition.get("name")
        if not isinstance(name, str) or not name:
            raise CliError(f"-f {path}: job {number} has no 'name' (apply matches jobs by name)")
        if name in seen:
            raise CliError(f"-f {path}: job {number} repeats the name {name!r} of job {seen[name]}")
        seen[name] = number


_MISSING = object()


def _instant(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def _differs(
    name: str, wanted: Any, current: Job, timezone: str, normal_schedule: Normaliser
) -> bool:
    have = current.to_json().get(name, _MISSING)
    if have is _MISSING:
        return True  # not a field of a job: let the API say so
    if name == "retry" and isinstance(wanted, dict):
        return any(bool(have.get(key, _MISSING) != value) for key, value in wanted.items())
    if name == "run_at":
        return bool(_instant(wanted) != current.run_at)
    if name == "schedule" and isinstance(wanted, str) and wanted != have:
        return bool(normal_schedule(wanted, timezone) != have)
    if isinstance(have, float | int) and isinstance(wanted, float | int):
        return float(have) != float(wanted)
    return bool(have != wanted)


def changes_of(
    definition: Mapping[str, Any], current: Job, normal_schedule: Normaliser
) -> list[Change]:
    found = []
    before = current.to_json()
    timezone = str(definition.get("timezone") or current.timezone)
    for name, wanted in definition.items():
        if _differs(name, wanted, current, timezone, normal_schedule):
            found.append(Change(name, before.get(name), wanted))
    return found


def plan(
    definitions: list[dict[str, Any]],
    jobs: Iterable[Job],
    *,
    prune: bool,
    normal_schedule: Normaliser,
) -> Plan:
    by_name = {job.name: job for job in jobs if job.name is not None}
    result = Plan()
    for definition in definitions:
        current = by_name.get(definition["name"])
        if current is None:
            result.create.append(definition)
            continue
        changes = changes_of(definition, current, normal_schedule)
        if changes:
            patch = {change.field: change.after for change in changes}
            result.update.append(Update(current, patch, changes))
        else:
            result.unchanged.append(definition["name"])
    if prune:
        wanted = {definition["name"] for definition in definitions}
        result.delete = [job for name, job in by_name.items() if name not in wanted]
    return result
