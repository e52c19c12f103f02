"""``jobsched workers list``, ``schedules preview`` and ``audit list``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from jobsched.cli.client_common import (
    LimitOption,
    OutputOption,
    ProfileOption,
    TokenOption,
    UrlOption,
    connect,
)
from jobsched.cli.output import Output, console, print_record, print_records, text
from jobsched.client.models import AuditRecord, Worker

workers = typer.Typer(help="the worker processes and their heartbeats", no_args_is_help=True)
schedules = typer.Typer(help="try a schedule expression", no_args_is_help=True)
audit = typer.Typer(help="who changed what, when (admin)", no_args_is_help=True)


@workers.command("list")
def list_workers(
    *,
    status: Annotated[str | None, typer.Option("--status", help="alive or gone")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """List registered workers, newest start first."""
    with connect(url, token, profile) as client:
        print_records(client.workers.list(status=status), Worker, output)


@schedules.command("preview")
def preview(
    *,
    schedule: Annotated[str, typer.Argument(help="e.g. '0 9 * * mon-fri' or '@every 90m'")],
    timezone: Annotated[str, typer.Option("--timezone", help="IANA zone")] = "UTC",
    count: Annotated[int, typer.Option("--count", min=1, max=100, help="fire times")] = 5,
    after: Annotated[
        str | None, typer.Option("--after", help="ISO 8601 with offset (default: now)")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """The next fire times of a schedule, in UTC."""
    with connect(url, token, profile) as client:
        found = client.schedules.preview(schedule, timezone=timezone, count=count, after=after)
    if output is not Output.TABLE:
        print_record(found, output)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column(f"FIRE TIMES OF {found.schedule} ({found.timezone})")
    for fire_time in found.fire_times:
        table.add_row(text(fire_time))
    console().print(table)


@audit.command("list")
def list_audit(
    *,
    action: Annotated[str | None, typer.Option("--action", help="e.g. job.created")] = None,
    target_kind: Annotated[
        str | None, typer.Option("--target-kind", help="job, run or token")
    ] = None,
    target_id: Annotated[str | None, typer.Option("--target-id", help="its id")] = None,
    by: Annotated[str | None, typer.Option("--by", help="a token's name")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO 8601 with offset")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO 8601 with offset")] = None,
    limit: LimitOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """List audit rows, newest first (needs an admin token)."""
    with connect(url, token, profile) as client:
        rows = client.audit.list(
            action=action,
            target_kind=target_kind,
            target_id=target_id,
            token=by,
            since=since,
            until=until,
            limit=limit,
        )
        print_records(rows, AuditRecord, output)
