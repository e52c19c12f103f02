"""Run jobsched's benchmarks one after another, print every table, then one combined table.

``python -m bench.run [--only NAME ...] [BENCHMARK OPTIONS]``: options this runner
does not know (``--window-seconds 30``) are handed to each benchmark. A new
benchmark is a module with ``run(argv) -> BenchmarkReport``, listed in
``BENCHMARKS``; the ``rows`` of its report go into the combined table, written
as JSON to ``bench/results/summary-<UTC timestamp>.json``. They run one at a
time: on a small machine two benchmarks at once would measure each other.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import cast

from bench.summary import RATIO_NOTE, summary_table, write_summary
from bench.support import BenchmarkReport, admin_url_from_environment, configure_logging

# Benchmark name -> module exposing ``run(argv) -> BenchmarkReport``, in the order
# of the scenarios of the performance issue; the combined table keeps it.
BENCHMARKS: dict[str, str] = {
    "drain": "bench.drain_bench",
    "create": "bench.create_bench",
    "latency": "bench.latency_bench",
    "scheduler": "bench.scheduler_bench",
    "worker": "bench.worker_bench",
    "dashboard": "bench.dashboard_bench",
}

logger = logging.getLogger("bench")


def _runner(module_name: str) -> Callable[[Sequence[str]], BenchmarkReport]:
    module = importlib.import_module(module_name)
    return cast(Callable[[Sequence[str]], BenchmarkReport], module.run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__.split("\n")[0],
        epilog="Any other option goes to every benchmark: see python -m bench.<module> --help"
        f" ({', '.join(BENCHMARKS.values())}).",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        help="run only this benchmark (repeatable); default: all",
    )
    arguments, benchmark_argv = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    configure_logging()
    started_at, load_average_before = datetime.now(UTC), os.getloadavg()
    reports, seconds_by_benchmark = [], {}
    for name in arguments.only or list(BENCHMARKS):
        logger.info("running benchmark %s", name)
        started = time.monotonic()
        reports.append(_runner(BENCHMARKS[name])(benchmark_argv))
        seconds_by_benchmark[name] = time.monotonic() - started
        logger.info("benchmark %s took %.0f s", name, seconds_by_benchmark[name])
    for report in reports:
        print(f"\n## {report.name}\n\n{report.table}\n\nresults: {report.results_path}")
    summary_path = write_summary(
        reports, seconds_by_benchmark, admin_url_from_environment(), started_at, load_average_before
    )
    rows = [row for report in reports for row in report.rows]
    print(f"\n## summary\n\n{summary_table(rows)}\n\n{RATIO_NOTE}\n\nresults: {summary_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
