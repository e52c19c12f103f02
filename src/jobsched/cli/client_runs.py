"""``jobsched runs list|get|cancel|retry|watch``."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated

import typer

from jobsched.cli.client_common import (
    LimitOption,
    OutputOption,
    ProfileOption,
    TokenOption,
    UrlOption,
    connect,
    job_id,
)
from jobsched.cli.client_errors import CliError
from jobsched.cli.output import Output, note, print_record, print_records, text
from jobsched.client.models import Run, RunDetail

app = typer.Typer(help="follow, cancel and retry runs", no_args_is_help=True)

RunArgument = Annotated[str, typer.Argument(metavar="RUN", help="the run's id")]


@app.command("list")
def list_runs(
    *,
    job: Annotated[str | None, typer.Option("--job", help="only this job's (id or name)")] = None,
    status: Annotated[str | None, typer.Option("--status", help="e.g. running, dead")] = None,
    limit: LimitOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """List runs, newest fire time first, every page."""
    with connect(url, token, profile) as client:
        of_job = job_id(client, job) if job is not None else None
        print_records(client.runs.list(job_id=of_job, status=status, limit=limit), Run, output)


@app.command("get")
def get_run(
    *,
    run: RunArgument,
    url: UrlOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Show a run with its attempts."""
    with connect(url, token, profile) as client:
        print_record(client.runs.get(run), output)


@app.command("cancel")
def cancel_run(
    *,
    run: RunArgument,
    url: UrlOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Cancel a queued, retrying or running run."""
    with connect(url, token, profile) as client:
        print_record(client.runs.cancel(run), output)


@app.command("retry")
def retry_run(
    *,
    run: RunArgument,
    url: UrlOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Queue a dead or cancelled run again."""
    with connect(url, token, profile) as client:
        print_record(client.runs.retry(run), output)


def _state(run: RunDetail) -> tuple[object, ...]:
    return (run.status, run.attempt, json.dumps(run.progress), run.last_error)


def _line(run: RunDetail) -> str:
    now = datetime.now(UTC).strftime("%H:%M:%S")
    parts = [f"{now} {run.status:<9} attempt {run.attempt}/{run.max_attempts}"]
    if run.progress is not None:
        parts.append(f"progress {text(run.progress)}")
    if run.last_error:
        parts.append(f"error: {run.last_error}")
    return "  ".join(parts)


@app.command("watch")
def watch_run(
    *,
    run: RunArgument,
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, help="seconds between looks")
    ] = 1.0,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=0, help="give up after this many seconds")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Follow a run to its end: exit 0 if it succeeded, 1 if it ended otherwise."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last: tuple[object, ...] | None = None
    with connect(url, token, profile) as client:
        while True:
            current = client.runs.get(run)
            if _state(current) != last:
                last = _state(current)
                if output is Output.JSONL:
                    print(json.dumps(current.to_json()), flush=True)
                elif output is Output.TABLE:
                    print(_line(current), flush=True)
            if current.is_final:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise CliError(f"run {run} is still {current.status} after --timeout {timeout:g}s")
            time.sleep(interval)
    if output is Output.JSON:
        print_record(current, output)
    if current.status != "succeeded":
        why = f": {current.last_error}" if current.last_error else ""
        raise CliError(f"run {run} ended {current.status}{why}")
    note(f"run {run} succeeded")
