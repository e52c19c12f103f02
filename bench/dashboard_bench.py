"""Dashboard: server time of its heaviest pages over a large history in PostgreSQL.

A fresh database is filled by SQL (``generate_series``) with ``--dashboard-jobs``
(100,000) active cron jobs on five queues and ``--dashboard-runs`` (1,000,000)
finished runs with one attempt each, spread over the jobs and the last days (one
in fifty dead), then analysed. The app (``create_app``, the dashboard included,
auth off) serves in this process through httpx's ASGI transport, so what is timed
is the server's work: the storage queries and the rendering. Each page is loaded
once to warm up, then ``--dashboard-loads`` (9) times; the row is the median.

Pages: the overview (``/ui/``), the jobs list (``/ui/jobs``, first page) and a
job's page (``/ui/jobs/{id}``, with its runs). The baseline is the target of the
dashboard issue, 200 ms per page.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import httpx
import psycopg

from bench.support import (
    BenchmarkReport,
    SummaryRow,
    admin_url_from_environment,
    configure_logging,
    describe_machine,
    format_table,
    fresh_postgres_database,
    write_results,
)
from jobsched.api import create_app
from jobsched.config.settings import DatabaseSettings, Settings
from jobsched.queue.database import DatabaseQueue
from jobsched.storage.database import SQLStorage

logger = logging.getLogger("bench.dashboard")

TARGET_MS = 200.0
_RETRY = (
    '{"max_attempts": 3, "backoff": "exponential", "initial_delay_seconds": 1.0,'
    ' "max_delay_seconds": 300.0, "jitter": true}'
)
_JOBS = """
INSERT INTO jobs (id, name, type, schedule, timezone, payload, queue, priority, retry,
                  status, next_run_at, schedule_anchor_at, created_at, updated_at,
                  misfire_policy, concurrency_policy)
SELECT md5('job' || i)::uuid, 'job-' || i, 'noop', '*/5 * * * *', 'UTC', '{}'::jsonb,
       'q' || (i %% 5), 0, %(retry)s::jsonb, 'active',
       now() + (i %% 300) * interval '1 second', now() - interval '30 days',
       now() - interval '30 days', now(), 'coalesce', 'allow'
FROM generate_series(1, %(jobs)s) AS i
"""
_RUNS = """
INSERT INTO runs (id, job_id, job_type, queue, priority, payload, retry, scheduled_for,
                  trigger, status, attempt, not_before, published_at, created_at,
                  updated_at, started_at, finished_at, last_error)
SELECT md5('run' || i)::uuid, md5('job' || (i %% %(jobs)s + 1))::uuid, 'noop',
       'q' || ((i %% %(jobs)s + 1) %% 5), 0, '{}'::jsonb, %(retry)s::jsonb, at, 'schedule',
       CASE WHEN i %% 50 = 0 THEN 'dead' ELSE 'succeeded' END, 1, at, at, at, at, at,
       at + interval '100 milliseconds',
       CASE WHEN i %% 50 = 0 THEN 'ValueError: planned failure' END
FROM generate_series(1, %(runs)s) AS i,
     LATERAL (SELECT now() - i * interval '1 second' AS at) AS t
"""
_ATTEMPTS = """
INSERT INTO attempts (id, run_id, attempt, status, worker_id, started_at, finished_at, error)
SELECT md5('attempt' || id::text)::uuid, id, 1,
       CASE WHEN status = 'dead' THEN 'failed' ELSE 'succeeded' END, 'bench-worker',
       started_at, finished_at, last_error
FROM runs
"""
PAGES = ("overview", "jobs list", "job page")


def parse_options(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard_bench")
    parser.add_argument("--dashboard-jobs", type=int, default=100_000)
    parser.add_argument("--dashboard-runs", type=int, default=1_000_000)
    parser.add_argument("--dashboard-loads", type=int, default=9)
    options, _ = parser.parse_known_args(argv)
    return options


def fill(url: str, jobs: int, runs: int) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        started = time.monotonic()
        connection.execute(_JOBS, {"jobs": jobs, "retry": _RETRY})
        connection.execute(_RUNS, {"jobs": jobs, "runs": runs, "retry": _RETRY})
        connection.execute(_ATTEMPTS)
        connection.execute("VACUUM ANALYZE")
        logger.info("filled %d jobs, %d runs in %.0f s", jobs, runs, time.monotonic() - started)


async def measure(url: str, loads: int) -> dict[str, list[float]]:
    storage = SQLStorage.from_url(url)
    settings = Settings(database=DatabaseSettings(url=url))
    app = create_app(storage, DatabaseQueue(storage), settings)
    transport = httpx.ASGITransport(app=app)
    timings: dict[str, list[float]] = {page: [] for page in PAGES}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            listed = await client.get("/jobs", params={"limit": 1})
            job_id = listed.json()["items"][0]["id"]
            paths = dict(zip(PAGES, ("/ui/", "/ui/jobs", f"/ui/jobs/{job_id}"), strict=True))
            for page, path in paths.items():
                for load in range(loads + 1):
                    started = time.perf_counter()
                    response = await client.get(path)
                    elapsed = (time.perf_counter() - started) * 1000
                    assert response.status_code == 200, (path, response.status_code)
                    if load > 0:  # the first load warms caches and the pool
                        timings[page].append(elapsed)
    finally:
        await storage.close()
    return timings


def run(argv: Sequence[str]) -> BenchmarkReport:
    options = parse_options(argv)
    admin_url = admin_url_from_environment()
    with fresh_postgres_database(admin_url, prefix="jobsched_bench_ui") as url:
        fill(url, options.dashboard_jobs, options.dashboard_runs)
        timings = asyncio.run(measure(url, options.dashboard_loads))
    medians = {page: statistics.median(values) for page, values in timings.items()}
    data: dict[str, Any] = {
        "machine": describe_machine(admin_url),
        "jobs": options.dashboard_jobs,
        "runs": options.dashboard_runs,
        "loads": options.dashboard_loads,
        "timings_ms": timings,
        "median_ms": medians,
        "target_ms": TARGET_MS,
    }
    table = format_table(
        ["page", "median ms", "min ms", "max ms", f"target {TARGET_MS:.0f} ms"],
        [
            [
                page,
                f"{medians[page]:.1f}",
                f"{min(timings[page]):.1f}",
                f"{max(timings[page]):.1f}",
                "met" if medians[page] < TARGET_MS else "MISSED",
            ]
            for page in PAGES
        ],
    )
    rows = tuple(
        SummaryRow(
            scenario="dashboard",
            backend="database",
            metric=f"{page} ms (median, {options.dashboard_jobs:,} jobs, "
            f"{options.dashboard_runs:,} runs)",
            jobsched=medians[page],
            baseline=TARGET_MS,
            baseline_name="target",
            higher_is_better=False,
            digits=1,
        )
        for page in PAGES
    )
    return BenchmarkReport("dashboard", table, write_results("dashboard", data), rows)


def main() -> None:
    configure_logging()
    print(run(sys.argv[1:]).table)


if __name__ == "__main__":
    main()
