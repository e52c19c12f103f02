"""How client commands print records: rich tables for people, JSON or JSON lines for scripts.

``-o json`` prints the API's own representation: one object for a single record,
an array for a list. ``-o jsonl`` prints one compact object per line, as each
page arrives. Field names and types are those of the REST API (``docs/api.md``).
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from jobsched.client.models import AuditRecord, Job, Record, Run, Worker


class Output(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    JSONL = "jsonl"


Column = tuple[str, Callable[[Any], object]]


def _field(name: str) -> Callable[[Any], object]:
    return lambda record: getattr(record, name)


JOB_COLUMNS: Sequence[Column] = [
    ("ID", _field("id")),
    ("NAME", _field("name")),
    ("TYPE", _field("type")),
    ("SCHEDULE", lambda job: job.schedule or job.run_at or "once, now"),
    ("QUEUE", _field("queue")),
    ("STATUS", _field("status")),
    ("NEXT RUN", _field("next_run_at")),
]
RUN_COLUMNS: Sequence[Column] = [
    ("ID", _field("id")),
    ("TYPE", _field("type")),
    ("STATUS", _field("status")),
    ("ATTEMPT", lambda run: f"{run.attempt}/{run.max_attempts}"),
    ("TRIGGER", _field("trigger")),
    ("SCHEDULED FOR", _field("scheduled_for")),
    ("ERROR", _field("last_error")),
]
WORKER_COLUMNS: Sequence[Column] = [
    ("ID", _field("id")),
    ("STATUS", _field("status")),
    ("QUEUES", lambda worker: ",".join(worker.queues)),
    ("RUNNING", lambda worker: f"{worker.runs_in_progress}/{worker.concurrency}"),
    ("HEARTBEAT", _field("heartbeat_at")),
]
AUDIT_COLUMNS: Sequence[Column] = [
    ("AT", _field("at")),
    ("ACTION", _field("action")),
    ("TOKEN", _field("token_name")),
    ("TARGET", lambda row: f"{row.target_kind} {row.target_id or ''}".strip()),
    ("FIELDS", lambda row: ",".join(row.fields)),
]
COLUMNS: dict[type[Record], Sequence[Column]] = {
    Job: JOB_COLUMNS,
    Run: RUN_COLUMNS,
    Worker: WORKER_COLUMNS,
    AuditRecord: AUDIT_COLUMNS,
}


def text(value: object) -> str:
    """A cell: ``-`` for nothing, times to the second in UTC, JSON for the rest."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds").replace("+00:00", "Z")
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# Piped into a file or another program, a table keeps each row on one line.
_PIPED_WIDTH = 1000


def console() -> Console:
    piped = not sys.stdout.isatty()
    return Console(highlight=False, soft_wrap=False, width=_PIPED_WIDTH if piped else None)


def print_records(records: Iterable[Record], kind: type[Record], output: Output) -> None:
    if output is Output.JSONL:
        for record in records:
            print(json.dumps(record.to_json()), flush=True)
    elif output is Output.JSON:
        print(json.dumps([record.to_json() for record in records], indent=2))
    else:
        table = Table(box=None, pad_edge=False, header_style="bold")
        columns = COLUMNS[kind]
        for header, _ in columns:
            table.add_column(header, no_wrap=header == "ID", overflow="fold")
        for record in records:
            table.add_row(*(text(value(record)) for _, value in columns))
        console().print(table)


def print_record(record: Record, output: Output) -> None:
    if output is Output.TABLE:
        table = Table(box=None, pad_edge=False, show_header=False)
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        for key, value in record.to_json().items():
            table.add_row(key, text(value))
        console().print(table)
        return
    indent = 2 if output is Output.JSON else None
    print(json.dumps(record.to_json(), indent=indent))


def note(message: str) -> None:
    """A line for the person at the terminal, never mixed into machine output."""
    print(message, file=sys.stderr)
