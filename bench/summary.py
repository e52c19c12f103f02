"""The combined table of ``make bench``: every figure beside its baseline, with a ratio.

One row per scenario, queue backend and metric, in the order the benchmarks ran.
Ratios are oriented so that above 1 always means jobsched did better (see
``SummaryRow.ratio``); ``RATIO_NOTE`` says so under the table.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.support import (
    BenchmarkReport,
    SummaryRow,
    describe_machine,
    format_table,
    write_results,
)

RATIO_NOTE = (
    "ratio > 1 means jobsched did better: jobsched / baseline for throughput (higher is"
    " better), baseline / jobsched for latency, memory and CPU (lower is better). Every"
    " baseline was measured in the same invocation, on the same machine."
)
HEADERS = ["scenario", "queue backend", "metric", "jobsched", "baseline", "baseline is", "ratio"]


# The scenarios of the performance issue, in its order; then the extra worker figures.
SCENARIO_ORDER = ("drain", "create", "latency", "scheduler", "resources", "worker", "dashboard")
BACKEND_ORDER = ("database", "redis", "rabbitmq")


def ordered(rows: Sequence[SummaryRow]) -> list[SummaryRow]:
    """Rows by scenario, resources by backend (worker, scheduler, api); else as given."""

    def position(row: SummaryRow) -> tuple[int, int]:
        scenario = SCENARIO_ORDER.index(row.scenario) if row.scenario in SCENARIO_ORDER else 99
        by_backend = row.scenario == "resources" and row.backend in BACKEND_ORDER
        return scenario, BACKEND_ORDER.index(row.backend) if by_backend else 0

    return sorted(rows, key=position)


def _figure(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def summary_table(rows: Sequence[SummaryRow]) -> str:
    return format_table(
        HEADERS,
        [
            [
                row.scenario,
                row.backend,
                row.metric,
                _figure(row.jobsched, row.digits),
                _figure(row.baseline, row.digits),
                row.baseline_name,
                _figure(row.ratio, 2),
            ]
            for row in ordered(rows)
        ],
    )


def write_summary(
    reports: Sequence[BenchmarkReport],
    seconds_by_benchmark: dict[str, float],
    admin_url: str,
    started_at: datetime,
    load_average_before: Sequence[float],
) -> Path:
    """Write ``bench/results/summary-<UTC timestamp>.json``: rows, machine, load, result files."""
    rows = [row for report in reports for row in report.rows]
    data: dict[str, Any] = {
        "started_at": started_at.isoformat(),
        "machine": describe_machine(admin_url),
        "load_average_before": list(load_average_before),
        "load_average_after": list(os.getloadavg()),
        "seconds_by_benchmark": seconds_by_benchmark,
        "ratio_note": RATIO_NOTE,
        "rows": [row.to_json() for row in ordered(rows)],
        "results": {report.name: str(report.results_path) for report in reports},
        "table": summary_table(rows),
    }
    return write_results("summary", data)
