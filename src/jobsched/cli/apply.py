"""``jobsched apply -f jobs.yaml [--dry-run] [--prune]``: jobs as code.

Creates the jobs of the file that the API does not have (by ``name``), changes
the fields that differ on those it has, and with ``--prune`` deletes the named
jobs the file leaves out. Applying the same file twice changes nothing: the
second time sends no write at all.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Annotated, Any

import typer

from jobsched.cli.apply_plan import Plan, check_definitions, plan
from jobsched.cli.client_common import OutputOption, ProfileOption, TokenOption, UrlOption, connect
from jobsched.cli.client_errors import CliError
from jobsched.cli.job_files import read_jobs
from jobsched.cli.output import Output, note
from jobsched.client import ApiError, Client


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _print_plan(result: Plan, *, dry_run: bool, ids: dict[str, str]) -> None:
    would = "would " if dry_run else ""
    for definition in result.create:
        name = definition["name"]
        print(f"+ {would}create job {name}" + (f" ({ids[name]})" if name in ids else ""))
        for key, value in definition.items():
            if key != "name":
                print(f"    {key}: {_value(value)}")
    for update in result.update:
        print(f"~ {would}update job {update.job.name} ({update.job.id})")
        for change in update.changes:
            print(f"    {change.field}: {_value(change.before)} -> {_value(change.after)}")
    for job in result.delete:
        print(f"- {would}delete job {job.name} ({job.id})")


def _summary(result: Plan, *, dry_run: bool) -> str:
    counts = (
        f"{len(result.create)} to create, {len(result.update)} to update, "
        f"{len(result.delete)} to delete, {len(result.unchanged)} unchanged"
        if dry_run
        else f"{len(result.create)} created, {len(result.update)} updated, "
        f"{len(result.delete)} deleted, {len(result.unchanged)} unchanged"
    )
    return ("apply (dry run): " if dry_run else "apply: ") + counts


def _as_json(result: Plan, *, dry_run: bool, ids: dict[str, str]) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "created": [
            {"name": item["name"], "id": ids.get(item["name"]), "fields": item}
            for item in result.create
        ],
        "updated": [
            {
                "name": update.job.name,
                "id": str(update.job.id),
                "changes": {
                    change.field: {"from": change.before, "to": change.after}
                    for change in update.changes
                },
            }
            for update in result.update
        ],
        "deleted": [{"name": job.name, "id": str(job.id)} for job in result.delete],
        "unchanged": result.unchanged,
    }


def _carry_out(client: Client, result: Plan, ids: dict[str, str]) -> None:
    done = 0
    try:
        for definition in result.create:
            what = f"creating job {definition['name']!r}"
            ids[definition["name"]] = str(client.jobs.create(definition).id)
            done += 1
        for update in result.update:
            what = f"updating job {update.job.name!r}"
            client.jobs.update(update.job.id, update.patch)
            done += 1
        for job in result.delete:
            what = f"deleting job {job.name!r}"
            client.jobs.delete(job.id)
            done += 1
    except ApiError as error:
        raise CliError(
            f"apply stopped {what}: {error.status} {error.message} "
            f"({done} change(s) made before it)"
        ) from error


def apply_jobs(
    *,
    file: Annotated[str, typer.Option("--file", "-f", help="jobs.yaml, jobs.json or - (stdin)")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print what would change, change nothing")
    ] = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="delete named jobs the file does not list")
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Make the API's jobs match a file of job definitions, by name."""
    definitions = read_jobs(file)
    check_definitions(definitions, file)
    with connect(url, token, profile) as client:

        @cache
        def normal_schedule(schedule: str, timezone: str) -> str:
            return client.schedules.preview(schedule, timezone=timezone, count=1).schedule

        result = plan(definitions, client.jobs.list(), prune=prune, normal_schedule=normal_schedule)
        ids: dict[str, str] = {}
        if not dry_run:
            _carry_out(client, result, ids)
    if output is Output.TABLE:
        _print_plan(result, dry_run=dry_run, ids=ids)
        note(_summary(result, dry_run=dry_run))
    else:
        indent = 2 if output is Output.JSON else None
        print(json.dumps(_as_json(result, dry_run=dry_run, ids=ids), indent=indent))
