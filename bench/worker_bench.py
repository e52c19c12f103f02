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
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.support import (
    BenchmarkReport,
    admin_url_from_environment,
    cpu_seconds_of_processes,
    cpu_used_since,
    describe_machine,
    format_table,
    fresh_postgres_database,
    hold_noop_runs,
    write_results,
)
from jobsched.storage.schema import attempts, runs

logger = logging.getLogger("bench.worker")
JOBSCHED = str(Path(sys.executable).with_name("jobsched"))


@dataclass(frozen=True, slots=True)
class WorkerResult:
    concurrency: int
    runs: int
    runs_per_second: float
    idle_rss_mib: float
    busy_rss_mib: float
    worker_cpu_seconds_per_1k_runs: float


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _worker_process(url: str, concurrency: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "JOBSCHED_DATABASE_URL": url,
        "JOBSCHED_METRICS_PORT": "0",
        "JOBSCHED_LOGGING_LEVEL": "WARNING",
    }
    with log_path.open("wb") as log:
        return subprocess.Popen(  # noqa: S603 - our own CLI, by absolute path
            [JOBSCHED, "worker", "--concurrency", str(concurrency)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _wait_registered(engine: sa.Engine, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the worker exited before registering")
        with engine.begin() as connection:
            if connection.execute(sa.text("SELECT count(*) FROM workers")).scalar_one():
                return
        time.sleep(0.1)
    raise RuntimeError("the worker did not register within 60 s")


def _drain(engine: sa.Engine, process: subprocess.Popen[bytes], count: int) -> float:
    """Release the held runs, wait until all succeeded; return the peak RSS (MiB)."""
    with engine.begin() as connection:
        connection.execute(sa.update(runs).values(not_before=sa.func.now()))
    peak = 0.0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        peak = max(peak, _rss_mib(process.pid))
        with engine.begin() as connection:
            done = connection.execute(
                sa.select(sa.func.count()).where(runs.c.status == "succeeded")
            ).scalar_one()
        if done == count:
            return peak
        time.sleep(0.2)
    raise RuntimeError(f"the worker did not finish {count} runs within 600 s")


def _runs_per_second(engine: sa.Engine, count: int) -> float:
    with engine.begin() as connection:
        first_start = connection.execute(sa.select(sa.func.min(attempts.c.started_at))).scalar_one()
        last_finish = connection.execute(sa.select(sa.func.max(runs.c.finished_at))).scalar_one()
    elapsed: timedelta = last_finish - first_start
    return count / elapsed.total_seconds()


def measure(admin_url: str, concurrency: int, count: int, log_directory: Path) -> WorkerResult:
    with fresh_postgres_database(admin_url) as url:
        asyncio.run(hold_noop_runs(url, count, published=True))
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        process = _worker_process(url, concurrency, log_directory / f"worker-{concurrency}.log")
        try:
            _wait_registered(engine, process)
            time.sleep(2)  # settle: the idle figure is a worker waiting for work
            idle = _rss_mib(process.pid)
            cpu_before = cpu_seconds_of_processes([process.pid])
            busy = _drain(engine, process, count)
            cpu = cpu_used_since(cpu_before, cpu_seconds_of_processes([process.pid]))
            rate = _runs_per_second(engine, count)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            engine.dispose()
    return WorkerResult(concurrency, count, rate, idle, busy, cpu / count * 1000)


def parse_options(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_bench")
    parser.add_argument("--concurrency", type=int, action="append", help="default: 1, 10, 100")
    parser.add_argument("--worker-runs", type=int, default=3000, help="runs per concurrency")
    options, _unknown = parser.parse_known_args(argv)
    return options


def run(argv: Sequence[str]) -> BenchmarkReport:
    options = parse_options(argv)
    admin_url = admin_url_from_environment()
    log_directory = Path(os.environ.get("TMPDIR", "/tmp"))  # noqa: S108 - worker logs only
    results = []
    for concurrency in options.concurrency or [1, 10, 100]:
        logger.info("worker at concurrency %d: %d noop runs", concurrency, options.worker_runs)
        results.append(measure(admin_url, concurrency, options.worker_runs, log_directory))
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
    }
    return BenchmarkReport("worker", table, write_results("worker", data))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(run(sys.argv[1:]).table)


if __name__ == "__main__":
    main()
