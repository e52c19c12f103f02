"""Drain: N one-time ``noop`` jobs due now, two workers, against Celery in the same invocation.

jobsched, once per queue backend (database, redis, rabbitmq): a fresh PostgreSQL
database gets N fired-but-held runs (far-future ``not_before``); two real
``jobsched worker`` processes and a ``jobsched scheduler`` start (with a broker,
the scheduler's outbox publishes the runs; on the database queue it has no part
in a drain and idles, as in any deployment). Once both workers registered and the
scheduler leads, one UPDATE releases every run (``not_before = now()``,
``published_at = NULL``). Throughput is runs / (first attempt started -> last run
finished), both read from PostgreSQL: claiming, running and durably recording
each run.

Celery baseline: Celery 5 on Redis database 15 (``bench.celery_baseline``), N
``noop`` tasks enqueued on a queue that two ``celery worker`` processes (already
up, idle) are then told to consume (``add_consumer``), no result backend.
Throughput is tasks / (first task start -> last task end), from the timestamps
each task appends to a Redis list.

Resources: each role's idle RSS (after start, before the release), busy RSS (the
peak sampled while draining) and CPU seconds per 1,000 runs while draining
(``bench.processes.UsageMeter``), for jobsched's workers and scheduler and for
Celery's workers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from bench import celery_baseline
from bench.deployment import (
    BACKENDS,
    BROKER_URLS,
    CELERY_BASELINE_NAME,
    broker_server_pids,
    celery_redis,
    celery_worker_names,
    jobsched_environment,
    new_namespace,
    postgres_backends,
    purge_broker,
    registered_workers,
    scheduler_leads,
    start_celery_workers,
    start_jobsched,
    sync_engine,
    wait_celery_ready,
)
from bench.processes import RoleUsage, ServiceUsage, UsageMeter, stop, wait_for
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

logger = logging.getLogger("bench.drain")
WORKER_PROCESSES = 2
# Processes are up: let start-up work (imports, pools, first polls) settle before the
# idle memory is read, so it is that of a process waiting for work.
SETTLE_SECONDS = 2.0
CELERY_IDLE_QUEUE = "bench-idle"
CELERY_DRAIN_QUEUE = "bench-drain"


@dataclass(frozen=True, slots=True)
class DrainResult:
    system: str  # "jobsched/<backend>" or "celery/redis"
    runs: int
    seconds: float
    runs_per_second: float
    usage: list[RoleUsage]
    services: list[ServiceUsage]

    def role(self, name: str) -> RoleUsage | None:
        return next((usage for usage in self.usage if usage.role == name), None)

    def service_cpu_seconds_per_1000(self, name: str | None = None) -> float:
        """CPU per 1,000 runs of one shared service, or of all of them (``name`` None)."""
        return sum(
            service.cpu_seconds_per_1000(self.runs)
            for service in self.services
            if name in (None, service.service)
        )

    def total_cpu_seconds_per_1000(self) -> float:
        """Every process's CPU per 1,000 runs: the roles' and the shared services'."""
        roles = sum(usage.cpu_seconds_per_1000(self.runs) for usage in self.usage)
        return roles + self.service_cpu_seconds_per_1000()


# --- jobsched ----------------------------------------------------------------------


def _count(engine: sa.Engine, query: sa.Select[int]) -> int:
    with engine.begin() as connection:
        return connection.execute(query).scalar_one()


def _seconds_from_first_start_to_last_finish(engine: sa.Engine) -> float:
    with engine.begin() as connection:
        first_start = connection.execute(sa.select(sa.func.min(attempts.c.started_at))).scalar_one()
        last_finish = connection.execute(sa.select(sa.func.max(runs.c.finished_at))).scalar_one()
    elapsed: timedelta = last_finish - first_start
    return elapsed.total_seconds()


def _release(engine: sa.Engine, backend: str) -> None:
    """Make every held run due now; with a broker, also hand it to the outbox."""
    values: dict[str, Any] = {"not_before": sa.func.now()}
    if backend in BROKER_URLS:
        values["published_at"] = None
    with engine.begin() as connection:
        connection.execute(sa.update(runs).values(**values))


def _jobsched_services(
    admin_url: str, url: str, backend: str
) -> dict[str, Callable[[], Sequence[int]]]:
    """PostgreSQL's backends of the benchmark database, and the broker's server process."""
    services: dict[str, Callable[[], Sequence[int]]] = {
        "postgresql": postgres_backends(admin_url, url)
    }
    if backend in BROKER_URLS:
        services[backend] = lambda: broker_server_pids(backend)
    return services


def measure_jobsched(admin_url: str, backend: str, count: int, concurrency: int) -> DrainResult:
    namespace = new_namespace()
    with fresh_postgres_database(admin_url) as url:
        # The database queue claims from PostgreSQL: the runs count as published already.
        asyncio.run(hold_noop_runs(url, count, published=backend == "database"))
        engine = sync_engine(url)
        environment = jobsched_environment(url, backend, namespace)
        workers = [
            start_jobsched(
                ["worker", "--concurrency", str(concurrency)],
                environment,
                f"drain-{backend}-worker-{index}.log",
            )
            for index in range(WORKER_PROCESSES)
        ]
        scheduler = start_jobsched(["scheduler"], environment, f"drain-{backend}-scheduler.log")
        processes = [*workers, scheduler]
        try:
            wait_for(
                lambda: registered_workers(engine) >= WORKER_PROCESSES and scheduler_leads(engine),
                processes,
                "workers registered and scheduler leading",
            )
            time.sleep(SETTLE_SECONDS)
            meter = UsageMeter(
                {"worker": [worker.pid for worker in workers], "scheduler": [scheduler.pid]},
                _jobsched_services(admin_url, url, backend),
            )
            meter.record_idle()
            succeeded = sa.select(sa.func.count()).where(runs.c.status == "succeeded")
            with meter.busy():
                _release(engine, backend)
                wait_for(lambda: _count(engine, succeeded) == count, processes, "complete drain")
            seconds = _seconds_from_first_start_to_last_finish(engine)
        finally:
            stop(processes)
            engine.dispose()
            purge_broker(url, backend, namespace)
    rate = count / seconds
    return DrainResult(
        f"jobsched/{backend}", count, seconds, rate, meter.usage(), meter.service_usage()
    )


# --- Celery baseline ---------------------------------------------------------------


def _celery_seconds(timings: Sequence[bytes | str]) -> float:
    pairs = [entry.split() for entry in timings]
    return max(float(end) for _start, end in pairs) - min(float(start) for start, _end in pairs)


def measure_celery(count: int, pool: str, concurrency: int) -> DrainResult:
    with celery_redis() as client:
        enqueue_seconds = celery_baseline.enqueue_noops(count, CELERY_DRAIN_QUEUE)
        logger.info("celery: %d tasks enqueued in %.1f s", count, enqueue_seconds)
        names = celery_worker_names("drain", WORKER_PROCESSES)
        processes = start_celery_workers(names, pool, concurrency, CELERY_IDLE_QUEUE, "drain")
        try:
            wait_celery_ready(names, processes)
            time.sleep(SETTLE_SECONDS)
            meter = UsageMeter(
                {"worker": [process.pid for process in processes]},
                {"redis": lambda: broker_server_pids("redis")},
            )
            meter.record_idle()
            with meter.busy():
                celery_baseline.app.control.add_consumer(CELERY_DRAIN_QUEUE, destination=names)
                timings_done = lambda: client.llen(celery_baseline.TIMINGS_KEY) >= count  # noqa: E731
                wait_for(timings_done, processes, "complete Celery drain")
        finally:
            stop(processes)
        seconds = _celery_seconds(client.lrange(celery_baseline.TIMINGS_KEY, 0, -1))
    rate = count / seconds
    return DrainResult("celery/redis", count, seconds, rate, meter.usage(), meter.service_usage())


# --- report ------------------------------------------------------------------------


def parse_options(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.drain_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--drain-runs", type=int, default=20_000, help="runs (and tasks) drained")
    parser.add_argument(
        "--drain-concurrency", type=int, default=50, help="per worker process, both systems"
    )
    parser.add_argument(
        "--drain-backend", action="append", choices=BACKENDS, help="default: all three"
    )
    parser.add_argument(
        "--celery-pool", choices=["threads", "prefork"], default="threads", help="Celery pool"
    )
    options, _unknown = parser.parse_known_args(argv)
    return options


def _megabytes(usage: RoleUsage | None, idle: bool) -> str:
    if usage is None:
        return "-"
    return f"{usage.idle_rss_mib if idle else usage.busy_rss_mib:.1f}"


def _cpu(usage: RoleUsage | None, runs: int) -> str:
    return "-" if usage is None else f"{usage.cpu_seconds_per_1000(runs):.2f}"


def _table_row(result: DrainResult, baseline: DrainResult, concurrency: int) -> list[str]:
    worker, scheduler = result.role("worker"), result.role("scheduler")
    broker = result.service_cpu_seconds_per_1000() - result.service_cpu_seconds_per_1000(
        "postgresql"
    )
    return [
        f"drain {result.runs} noop, {WORKER_PROCESSES}x{concurrency}, {result.system}",
        f"{result.runs_per_second:.0f}",
        f"{result.runs_per_second / baseline.runs_per_second:.2f}",
        _megabytes(worker, idle=True),
        _megabytes(worker, idle=False),
        _cpu(worker, result.runs),
        _megabytes(scheduler, idle=True),
        _megabytes(scheduler, idle=False),
        _cpu(scheduler, result.runs),
        f"{result.service_cpu_seconds_per_1000('postgresql'):.2f}",
        f"{broker:.2f}",
        f"{result.total_cpu_seconds_per_1000():.2f}",
    ]


def _table(results: Sequence[DrainResult], baseline: DrainResult, concurrency: int) -> str:
    headers = [
        "scenario",
        "runs/s",
        "ratio to Celery",
        "worker idle RSS MiB",
        "worker busy RSS MiB",
        f"worker CPU s/1k runs ({WORKER_PROCESSES} processes)",
        "scheduler idle RSS MiB",
        "scheduler busy RSS MiB",
        "scheduler CPU s/1k runs",
        "PostgreSQL CPU s/1k runs",
        "broker CPU s/1k runs",
        "all CPU s/1k runs",
    ]
    rows = [_table_row(result, baseline, concurrency) for result in [*results, baseline]]
    return format_table(headers, rows)


def _role_rows(result: DrainResult, baseline: DrainResult, backend: str) -> list[SummaryRow]:
    rows = []
    for role in ("worker", "scheduler"):
        usage, celery = result.role(role), baseline.role(role)
        if usage is None:
            continue
        baseline_name = f"{CELERY_BASELINE_NAME} {role}" if celery else "none (no Celery role)"
        processes = f" ({usage.processes} processes)" if usage.processes > 1 else ""
        figures = [
            (
                f"{role} idle RSS MiB",
                usage.idle_rss_mib,
                celery.idle_rss_mib if celery else None,
                1,
            ),
            (
                f"{role} busy RSS MiB",
                usage.busy_rss_mib,
                celery.busy_rss_mib if celery else None,
                1,
            ),
            (
                f"{role} CPU s/1k runs{processes}",
                usage.cpu_seconds_per_1000(result.runs),
                celery.cpu_seconds_per_1000(baseline.runs) if celery else None,
                2,
            ),
        ]
        rows += [
            SummaryRow("resources", backend, metric, mine, theirs, baseline_name, False, digits)
            for metric, mine, theirs, digits in figures
        ]
    return rows


def _resource_rows(result: DrainResult, baseline: DrainResult, backend: str) -> list[SummaryRow]:
    """Each role's memory and CPU, then the shared services' CPU and everything's together."""
    services = "PostgreSQL" if backend == "database" else f"PostgreSQL + {backend}"
    return [
        *_role_rows(result, baseline, backend),
        SummaryRow(
            "resources",
            backend,
            f"{services} CPU s/1k runs (drain)",
            result.service_cpu_seconds_per_1000(),
            baseline.service_cpu_seconds_per_1000(),
            f"{CELERY_BASELINE_NAME}: redis-server",
            False,
            2,
        ),
        SummaryRow(
            "resources",
            backend,
            "all processes CPU s/1k runs (drain)",
            result.total_cpu_seconds_per_1000(),
            baseline.total_cpu_seconds_per_1000(),
            f"{CELERY_BASELINE_NAME}: workers + redis-server",
            False,
            2,
        ),
    ]


def summary_rows(
    results: Sequence[DrainResult], baseline: DrainResult, concurrency: int, pool: str
) -> list[SummaryRow]:
    """The drain and the workers' and scheduler's resources, per backend, for the summary."""
    baseline_name = f"{CELERY_BASELINE_NAME}, {WORKER_PROCESSES}x{concurrency} {pool}"
    rows = []
    for result in results:
        backend = result.system.split("/", 1)[1]
        rows.append(
            SummaryRow(
                "drain",
                backend,
                f"runs/s ({result.runs} noop, {WORKER_PROCESSES} workers)",
                result.runs_per_second,
                baseline.runs_per_second,
                baseline_name,
                True,
            )
        )
        rows += _resource_rows(result, baseline, backend)
    return rows


def run(argv: Sequence[str]) -> BenchmarkReport:
    options = parse_options(argv)
    admin_url = admin_url_from_environment()
    count, concurrency = options.drain_runs, options.drain_concurrency
    logger.info("celery/redis (%s pool): draining %d noop tasks", options.celery_pool, count)
    baseline = measure_celery(count, options.celery_pool, concurrency)
    results = []
    for backend in options.drain_backend or BACKENDS:
        logger.info("jobsched/%s: draining %d noop runs", backend, count)
        results.append(measure_jobsched(admin_url, backend, count, concurrency))
    data: dict[str, Any] = {
        "machine": describe_machine(admin_url),
        "worker_processes": WORKER_PROCESSES,
        "concurrency_per_worker": concurrency,
        "celery_pool": options.celery_pool,
        "baseline": asdict(baseline),
        "results": [asdict(result) for result in results],
        "load_average_after": list(os.getloadavg()),
    }
    rows = summary_rows(results, baseline, concurrency, options.celery_pool)
    table = _table(results, baseline, concurrency)
    return BenchmarkReport("drain", table, write_results("drain", data), tuple(rows))


def main() -> None:
    configure_logging()
    print(run(sys.argv[1:]).table)


if __name__ == "__main__":
    main()
