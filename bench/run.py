"""Run jobsched's benchmarks one after another and print every table at the end.

``python -m bench.run [--only NAME ...] [BENCHMARK OPTIONS]``: options this runner
does not know (``--window-seconds 30``) are handed to each benchmark. A new
benchmark is a module with ``run(argv) -> BenchmarkReport``, listed in
``BENCHMARKS``. They run one at a time: on a small machine two benchmarks at once
would measure each other.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import cast

from bench.support import BenchmarkReport, configure_logging

# Benchmark name -> module exposing ``run(argv) -> BenchmarkReport``.
BENCHMARKS: dict[str, str] = {
    "scheduler": "bench.scheduler_bench",
    "worker": "bench.worker_bench",
    "drain": "bench.drain_bench",
}


def _runner(module_name: str) -> Callable[[Sequence[str]], BenchmarkReport]:
    module = importlib.import_module(module_name)
    return cast(Callable[[Sequence[str]], BenchmarkReport], module.run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        help="run only this benchmark (repeatable); default: all",
    )
    arguments, benchmark_argv = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    configure_logging()
    reports = []
    for name in arguments.only or list(BENCHMARKS):
        logging.getLogger("bench").info("running benchmark %s", name)
        reports.append(_runner(BENCHMARKS[name])(benchmark_argv))
    for report in reports:
        print(f"\n## {report.name}\n\n{report.table}\n\nresults: {report.results_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
