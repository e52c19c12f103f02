"""Worker throughput and memory: ``noop`` runs at concurrency 1, 10 and 100.

For each concurrency a fresh PostgreSQL database gets N ready-but-held runs; a
real ``jobsched worker`` process (database queue) starts, registers and idles
(idle RSS), then every run is released at once by one UPDATE and the worker
drains them (busy RSS: the peak sampled while draining). Throughput is runs
divided by the time from the first attempt's start to the last run's finish,
both read from the database, so it counts claiming, running and recording each
attempt: everything a run costs, durably.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from bench.deployment import (
    jobsched_environment,
    new_namespace,
    registered_workers,
    start_jobsched,
    sync_engine,
)
from bench.processes import UsageMeter, stop, wait_for
from bench.support import (
    BenchmarkReport,
    SummaryRow,
    admin_url_from_environment,
    configure_logging,
    describe_machine,
    format_table,
    fresh_postgres_database,
    hold_noop_runs,
    write_results,
)
from jobsched.storage.schema import attempts, runs

logger = logging.getLogger("bench.worker")
SETTLE_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class WorkerResult:
    concurrency: int
    runs: int
    runs_per_second: float
    idle_rss_mib: float
    busy_rss_mib: float
    worker_cpu_seconds_per_1k_runs: float


def _worker_process(url: str, concurrency: int) -> subprocess.Popen[bytes]:
    environment = jobsched_environment(url, "database", new_namespace())
    return start_jobsched(
        ["worker", "--concurrency", str(concurrency)], environment, f"worker-{concurrency}.log"
    )


def _drain(engine: sa.Engine, process: subprocess.Popen[bytes], count: int) -> None:
    """Release the held runs and wait until all succeeded."""
    with engine.begin() as connection:
        connection.execute(sa.update(runs).values(not_before=sa.func.now()))

    def succeeded() -> int:
        with engine.begin() as connection:
            return connection.execute(
                sa.select(sa.func.count()).where(runs.c.status == "succeeded")
            ).scalar_one()

    wait_for(lambda: succeeded() == count, [process], f"{count} runs drained")


def _runs_per_second(engine: sa.Engine, count: int) -> float:
    with engine.begin() as connection:
        first_start = connection.execute(sa.select(sa.func.min(attempts.c.started_at))).scalar_one()
        last_finish = connection.execute(sa.select(sa.func.max(runs.c.finished_at))).scalar_one()
    elapsed: timedelta = last_finish - first_start
    return count / elapsed.total_seconds()


def measure(admin_url: str, concurrency: int, count: int) -> WorkerResult:
    with fresh_postgres_database(admin_url) as url:
        asyncio.run(hold_noop_runs(url, count, published=True))
        engine = sync_engine(url)
        process = _worker_process(url, concurrency)
        try:
            wait_for(lambda: registered_workers(engine) >= 1, [process], "registration")
            time.sleep(SETTLE_SECONDS)  # the idle figure is a worker waiting for work
            meter = UsageMeter({"worker": [process.pid]})
            meter.record_idle()
            with meter.busy():
                _drain(engine, process, count)
            rate = _runs_per_second(engine, count)
        finally:
            stop([process])
            engine.dispose()
    [usage] = meter.usage()
    return WorkerResult(
        concurrency,
        count,
        rate,
        usage.idle_rss_mib,
        usage.busy_rss_mib,
        usage.cpu_seconds_per_1000(count),
    )


def parse_options(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_bench")
    parser.add_argument("--concurrency", type=int, action="append", help="default: 1, 10, 100")
    parser.add_argument("--worker-runs", type=int, default=3000, help="runs per concurrency")
    options, _unknown = parser.parse_known_args(argv)
    return options


def run(argv: Sequence[str]) -> BenchmarkReport:
    options = parse_options(argv)
    admin_url = admin_url_from_environment()
    results = []
    for concurrency in options.concurrency or [1, 10, 100]:
        logger.info("worker at concurrency %d: %d noop runs", concurrency, options.worker_runs)
        results.append(measure(admin_url, concurrency, options.worker_runs))
    table = format_table(
        ["concurrency", "runs", "runs/s", "idle RSS MiB", "busy RSS MiB", "worker CPU s/1k runs"],
        [
            [
                result.concurrency,
                result.runs,
                f"{result.runs_per_second:.0f}",
                f"{result.idle_rss_mib:.1f}",
                f"{result.busy_rss_mib:.1f}",
                f"{result.worker_cpu_seconds_per_1k_runs:.2f}",
            ]
            for result in results
        ],
    )
    data: dict[str, Any] = {
        "machine": describe_machine(admin_url),
        "results": [asdict(result) for result in results],
        "load_average_after": list(os.getloadavg()),
    }
    rows = tuple(
        SummaryRow(
            "worker",
            "database",
            f"runs/s, one worker at concurrency {result.concurrency}",
            result.runs_per_second,
            None,
            "none (how one worker scales)",
            True,
        )
        for result in results
    )
    return BenchmarkReport("worker", table, write_results("worker", data), rows)


def main() -> None:
    configure_logging()
    print(run(sys.argv[1:]).table)


if __name__ == "__main__":
    main()
