"""``jobsched jobs list|get|create|update|delete|trigger|pause|resume|runs``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from jobsched.cli.client_common import (
    LimitOption,
    OutputOption,
    ProfileOption,
    TokenOption,
    UrlOption,
    connect,
    job_id,
    parse_json_option,
)
from jobsched.cli.client_errors import CliError
from jobsched.cli.job_files import read_job
from jobsched.cli.output import Output, note, print_record, print_records
from jobsched.client.models import Job, Run

app = typer.Typer(help="create, read, change, trigger and delete jobs", no_args_is_help=True)

JobArgument = Annotated[str, typer.Argument(metavar="JOB", help="the job's id or name")]
FileOption = Annotated[
    str | None,
    typer.Option("--file", "-f", help="job definition: job.yaml, job.json or - (stdin)"),
]
TypeOption = Annotated[str | None, typer.Option("--type", help="handler type, e.g. http")]
NameOption = Annotated[str | None, typer.Option("--name", help="unique name")]
ScheduleOption = Annotated[
    str | None, typer.Option("--schedule", help="cron, @daily or @every 5m; none: one-time")
]
RunAtOption = Annotated[
    str | None, typer.Option("--run-at", help="one-time jobs: when, ISO 8601 with offset")
]
TimezoneOption = Annotated[str | None, typer.Option("--timezone", help="IANA zone, e.g. UTC")]
PayloadOption = Annotated[str | None, typer.Option("--payload", help="a JSON object")]
QueueOption = Annotated[str | None, typer.Option("--queue", help="queue name")]
PriorityOption = Annotated[int | None, typer.Option("--priority", help="-100..100")]
TimeoutOption = Annotated[
    float | None, typer.Option("--timeout", help="seconds an attempt may take")
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key", help="a repeat with this key gets the first answer, not a copy"
    ),
]
AttemptsOption = Annotated[
    int | None, typer.Option("--max-attempts", help="attempts before the run is dead")
]


def _definition(
    file: str | None,
    flags: dict[str, Any],
    payload: str | None,
    max_attempts: int | None,
) -> dict[str, Any]:
    """The file's fields, then the flags given (flags win)."""
    body = read_job(file) if file is not None else {}
    body.update({key: value for key, value in flags.items() if value is not None})
    if payload is not None:
        body["payload"] = parse_json_option("--payload", payload)
    if max_attempts is not None:
        body["retry"] = {**(body.get("retry") or {}), "max_attempts": max_attempts}
    return body


@app.command("list")
def list_jobs(
    *,
    type: TypeOption = None,
    status: Annotated[
        str | None, typer.Option("--status", help="active, paused, completed")
    ] = None,
    queue: QueueOption = None,
    limit: LimitOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """List jobs, oldest first, every page."""
    with connect(url, token, profile) as client:
        jobs = client.jobs.list(type=type, status=status, queue=queue, limit=limit)
        print_records(jobs, Job, output)


@app.command("get")
def get_job(
    *,
    job: JobArgument,
    url: UrlOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Show a job."""
    with connect(url, token, profile) as client:
        print_record(client.jobs.get(job_id(client, job)), output)


@app.command("create")
def create_job(
    *,
    file: FileOption = None,
    type: TypeOption = None,
    name: NameOption = None,
    schedule: ScheduleOption = None,
    run_at: RunAtOption = None,
    timezone: TimezoneOption = None,
    payload: PayloadOption = None,
    queue: QueueOption = None,
    priority: PriorityOption = None,
    timeout: TimeoutOption = None,
    max_attempts: AttemptsOption = None,
    idempotency_key: KeyOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Create a job from flags, or from -f FILE (flags override the file's fields)."""
    flags = {
        "type": type,
        "name": name,
        "schedule": schedule,
        "run_at": run_at,
        "timezone": timezone,
        "queue": queue,
        "priority": priority,
        "timeout_seconds": timeout,
    }
    body = _definition(file, flags, payload, max_attempts)
    if "type" not in body:
        raise CliError("jobs create needs --type (or a 'type' field in -f FILE)")
    with connect(url, token, profile) as client:
        print_record(client.jobs.create(body, idempotency_key=idempotency_key), output)


@app.command("update")
def update_job(
    *,
    job: JobArgument,
    file: FileOption = None,
    type: TypeOption = None,
    name: NameOption = None,
    schedule: ScheduleOption = None,
    run_at: RunAtOption = None,
    timezone: TimezoneOption = None,
    payload: PayloadOption = None,
    queue: QueueOption = None,
    priority: PriorityOption = None,
    timeout: TimeoutOption = None,
    max_attempts: AttemptsOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Change the fields given (flags, or -f FILE); the others keep their values."""
    flags = {
        "type": type,
        "name": name,
        "schedule": schedule,
        "run_at": run_at,
        "timezone": timezone,
        "queue": queue,
        "priority": priority,
        "timeout_seconds": timeout,
    }
    body = _definition(file, flags, payload, max_attempts)
    if not body:
        raise CliError("jobs update needs a field to change: a flag such as --schedule, or -f")
    with connect(url, token, profile) as client:
        print_record(client.jobs.update(job_id(client, job), body), output)


@app.command("delete")
def delete_job(
    *,
    job: JobArgument,
    url: UrlOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
) -> None:
    """Delete a job with its runs."""
    with connect(url, token, profile) as client:
        found = job_id(client, job)
        client.jobs.delete(found)
    note(f"deleted job {found}")


@app.command("trigger")
def trigger_job(
    *,
    job: JobArgument,
    payload: Annotated[
        str | None, typer.Option("--payload", help="a JSON object for this run only")
    ] = None,
    idempotency_key: KeyOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Run a job now (its schedule is unchanged); prints the new run."""
    with connect(url, token, profile) as client:
        run = client.jobs.trigger(
            job_id(client, job),
            payload=parse_json_option("--payload", payload),
            idempotency_key=idempotency_key,
        )
        print_record(run, output)


@app.command("pause")
def pause_job(
    *,
    job: JobArgument,
    url: UrlOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Stop firing a job until it is resumed."""
    with connect(url, token, profile) as client:
        print_record(client.jobs.pause(job_id(client, job)), output)


@app.command("resume")
def resume_job(
    *,
    job: JobArgument,
    url: UrlOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Fire a paused job again, from its next fire time."""
    with connect(url, token, profile) as client:
        print_record(client.jobs.resume(job_id(client, job)), output)


@app.command("runs")
def job_runs(
    *,
    job: JobArgument,
    status: Annotated[str | None, typer.Option("--status", help="e.g. dead")] = None,
    limit: LimitOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """List a job's runs, newest first."""
    with connect(url, token, profile) as client:
        runs = client.jobs.runs(job_id(client, job), status=status, limit=limit)
        print_records(runs, Run, output)
