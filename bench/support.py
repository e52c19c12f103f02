"""What every benchmark needs: a throw-away database, CPU accounting, tables and result files.

CPU figures come from the kernel (``/proc``), so they count what the processes
really used, whatever else the (shared, noisy) machine was doing; the machine's
total busy time is sampled too, so a report can say how much of it was someone
else's.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from jobsched.core.models import JobSpec
from jobsched.core.planning import FirePlan
from jobsched.storage.database import SQLStorage
from jobsched.storage.migrate import upgrade_to_head
from jobsched.storage.urls import parse_database_url

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ADMIN_URL_VARIABLE = "BENCH_POSTGRES_URL"
RESULTS_DIRECTORY = Path(__file__).resolve().parent / "results"
_CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """One line of the combined table: a figure of jobsched's beside its baseline's.

    ``ratio`` is oriented so that above 1 always means jobsched did better:
    jobsched / baseline where higher is better (throughput), baseline / jobsched
    where lower is better (latency, memory, CPU). It is None where either side
    has no figure.
    """

    scenario: str
    backend: str
    metric: str
    jobsched: float | None
    baseline: float | None
    baseline_name: str
    higher_is_better: bool
    digits: int = 0

    @property
    def ratio(self) -> float | None:
        if not self.jobsched or not self.baseline:
            return None
        if self.higher_is_better:
            return self.jobsched / self.baseline
        return self.baseline / self.jobsched

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "backend": self.backend,
            "metric": self.metric,
            "jobsched": self.jobsched,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "higher_is_better": self.higher_is_better,
            "ratio": self.ratio,
        }


@dataclass(frozen=True, slots=True)
class BenchmarkReport:
    """What a benchmark hands back to ``bench.run``: its table, its summary rows, its JSON."""

    name: str
    table: str
    results_path: Path
    rows: tuple[SummaryRow, ...] = ()


def configure_logging() -> None:
    """Progress lines from the benchmarks; the libraries' own INFO lines would be noise.

    httpx logs every request at INFO: besides the noise, formatting those lines
    would be CPU the benchmark client takes from the server it measures.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("jobsched", "alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def admin_url_from_environment() -> str:
    return os.environ.get(ADMIN_URL_VARIABLE, DEFAULT_ADMIN_URL)


def _url_of_database(admin_url: str, database_name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + database_name


def _administer(admin_url: str, statement: sql.Composed) -> None:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(statement)


@contextmanager
def fresh_postgres_database(admin_url: str, prefix: str = "jobsched_bench") -> Iterator[str]:
    """A new database migrated to head, dropped (even if the benchmark fails) on exit.

    The name carries a random suffix, so concurrent runs and test suites never collide.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    identifier = sql.Identifier(name)
    _administer(admin_url, sql.SQL("CREATE DATABASE {}").format(identifier))
    try:
        url = _url_of_database(admin_url, name)
        upgrade_to_head(parse_database_url(url))
        yield url
    finally:
        _administer(
            admin_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier)
        )


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (``/proc/stat``), summed over cores."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...: idle and iowait are not work.
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / _CLOCK_TICKS_PER_SECOND


def cpu_seconds_of_processes(pids: Sequence[int]) -> dict[int, float]:
    """User plus system CPU seconds of each live process in ``pids``; gone ones are left out."""
    seconds: dict[int, float] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                text = stat.read()
        except OSError:
            continue
        # The command name (field 2) may hold spaces; the fields after it are positional.
        fields = text.rsplit(")", 1)[1].split()
        user_ticks, system_ticks = int(fields[11]), int(fields[12])
        seconds[pid] = (user_ticks + system_ticks) / _CLOCK_TICKS_PER_SECOND
    return seconds


def cpu_used_since(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the processes used between two samples; a process born since counts whole."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` quantile, interpolated as ``percentile_cont`` does; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe_machine(admin_url: str) -> dict[str, Any]:
    """The facts a reader needs to compare figures: cores, CPU, load, PostgreSQL version."""
    with psycopg.connect(admin_url) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "load_average_1_5_15": list(os.getloadavg()),
        "python": platform.python_version(),
        "postgresql": row[0] if row else "unknown",
        "platform": platform.platform(),
    }


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (pastes straight into ``bench/README.md``), columns padded."""
    cells = [[str(header) for header in headers]] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            + " |"
        )

    separator = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(cells[0]), separator, *(line(row) for row in cells[1:])])


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write ``data`` to ``bench/results/<name>-<UTC timestamp>.json`` and return the path."""
    RESULTS_DIRECTORY.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIRECTORY / f"{name}-{stamp}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path


# Runs are created due at this far-future time and released all at once by one
# UPDATE of ``not_before``, so a benchmark measures draining, not inserting.
HELD_UNTIL = datetime(2100, 1, 1, tzinfo=UTC)


async def hold_noop_runs(url: str, count: int, *, published: bool) -> None:
    """``count`` committed ``noop`` runs, ready except for a far-future ``not_before``."""
    storage = SQLStorage.from_url(url)
    try:
        now = await storage.now()
        for start in range(0, count, 1000):
            size = min(1000, count - start)
            await storage.create_jobs([(JobSpec(type="noop", payload={}), now)] * size, now=now)
        fired = 0
        while fired < count:
            batch = await storage.fire_due_jobs(
                now, 1000, lambda _job: FirePlan([HELD_UNTIL], None), published=published
            )
            fired += len(batch)
    finally:
        await storage.close()
