"""Drain: N one-time ``noop`` jobs due now, two workers, against Celery in the same invocation.

jobsched, once per queue backend (database, redis, rabbitmq): a fresh PostgreSQL
database gets N fired-but-held runs (far-future ``not_before``); two real
``jobsched worker`` processes start (plus a ``jobsched scheduler`` for the broker
backends: its outbox publishes the runs), and once both workers registered one
UPDATE releases every run (``not_before = now()``, ``published_at = NULL``).
Throughput is runs / (first attempt started -> last run finished), both read from
PostgreSQL: claiming, running and durably recording each run.

Celery baseline: Celery 5 on Redis database 15 (``bench.celery_baseline``), N
``noop`` tasks enqueued before two ``celery worker`` processes start, no result
backend. Throughput is tasks / (first task start -> last task end), from the
timestamps each task appends to a Redis list.
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
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aio_pika
import redis
import sqlalchemy as sa

from bench import celery_baseline
from bench.support import (
    BenchmarkReport,
    admin_url_from_environment,
    describe_machine,
    format_table,
    fresh_postgres_database,
    hold_noop_runs,
    write_results,
)
from jobsched.config.settings import QueueSettings
from jobsched.queue import create_queue
from jobsched.queue.rabbitmq_topology import Topology
from jobsched.storage.database import SQLStorage
from jobsched.storage.schema import attempts, runs, workers

logger = logging.getLogger("bench.drain")
BIN_DIRECTORY = Path(sys.executable).parent
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
WORKER_PROCESSES = 2
BACKENDS = ("database", "redis", "rabbitmq")
BROKER_URLS: dict[str, str] = {
    "redis": "redis://127.0.0.1:6379/0",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/",
}
DRAIN_DEADLINE_SECONDS = 600.0
JOBSCHED_QUEUE_NAME = "default"


@dataclass(frozen=True, slots=True)
class DrainResult:
    system: str  # "jobsched/<backend>" or "celery/redis"
    runs: int
    seconds: float
    runs_per_second: float


# --- processes ---------------------------------------------------------------------


def _start(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(  # noqa: S603 - our own CLIs, by absolute path
            command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPOSITORY_ROOT
        )


def _stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for(
    condition: Callable[[], bool], processes: Sequence[subprocess.Popen[bytes]], what: str
) -> None:
    """Poll ``condition`` until true; fail fast if a process died, or after the deadline."""
    deadline = time.monotonic() + DRAIN_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            raise RuntimeError(f"a benchmark process exited while waiting for {what}")
        if condition():
            return
        time.sleep(0.2)
    raise RuntimeError(f"no {what} within {DRAIN_DEADLINE_SECONDS:.0f} s")


# --- jobsched ----------------------------------------------------------------------


def _jobsched_processes(
    url: str, backend: str, namespace: str, concurrency: int, log_directory: Path
) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "JOBSCHED_DATABASE_URL": url,
        "JOBSCHED_METRICS_PORT": "0",
        "JOBSCHED_LOGGING_LEVEL": "WARNING",
        "JOBSCHED_QUEUE_NAMESPACE": namespace,
    }
    if backend in BROKER_URLS:
        env["JOBSCHED_QUEUE_URL"] = BROKER_URLS[backend]
    jobsched = str(BIN_DIRECTORY / "jobsched")
    processes = [
        _start(
            [jobsched, "worker", "--concurrency", str(concurrency)],
            env,
            log_directory / f"drain-{backend}-worker-{index}.log",
        )
        for index in range(WORKER_PROCESSES)
    ]
    if backend in BROKER_URLS:
        processes.append(
            _start([jobsched, "scheduler"], env, log_directory / f"drain-{backend}-scheduler.log")
        )
    return processes


def _count(engine: sa.Engine, query: sa.Select[int]) -> int:
    with engine.begin() as connection:
        return connection.execute(query).scalar_one()


def _jobsched_rate(engine: sa.Engine, backend: str, count: int) -> DrainResult:
    with engine.begin() as connection:
        first_start = connection.execute(sa.select(sa.func.min(attempts.c.started_at))).scalar_one()
        last_finish = connection.execute(sa.select(sa.func.max(runs.c.finished_at))).scalar_one()
    elapsed: timedelta = last_finish - first_start
    seconds = elapsed.total_seconds()
    return DrainResult(f"jobsched/{backend}", count, seconds, count / seconds)


async def _purge_broker(url: str, backend: str, namespace: str) -> None:
    """Delete what the run left under ``namespace`` on the broker.

    By name rather than through a queue that declared it: the processes are gone.
    """
    if backend == "redis":
        storage = SQLStorage.from_url(url)
        queue = create_queue(QueueSettings(url=BROKER_URLS["redis"], namespace=namespace), storage)
        try:
            await getattr(queue, "purge_namespace")()  # noqa: B009 - not on the RunQueue contract
        finally:
            await queue.close()
            await storage.close()
    elif backend == "rabbitmq":
        topology = Topology(namespace, "classic")  # the names do not depend on the queue type
        connection = await aio_pika.connect(BROKER_URLS["rabbitmq"], timeout=10)
        try:
            channel = await connection.channel()
            for queue_name in [
                topology.dead_queue,
                topology.sentinel_queue,
                topology.run_queue(JOBSCHED_QUEUE_NAME),
            ]:
                await channel.queue_delete(queue_name)
            for exchange in [topology.run_exchange, topology.dead_exchange]:
                await channel.exchange_delete(exchange)
        finally:
            await connection.close()


def measure_jobsched(
    admin_url: str, backend: str, count: int, concurrency: int, log_directory: Path
) -> DrainResult:
    namespace = f"bench-{uuid.uuid4().hex[:12]}"
    with fresh_postgres_database(admin_url) as url:
        # The database queue claims from PostgreSQL: the runs count as published already.
        asyncio.run(hold_noop_runs(url, count, published=backend == "database"))
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        processes = _jobsched_processes(url, backend, namespace, concurrency, log_directory)
        try:
            registered = sa.select(sa.func.count()).select_from(workers)
            _wait_for(
                lambda: _count(engine, registered) >= WORKER_PROCESSES, processes, "registration"
            )
            with engine.begin() as connection:
                connection.execute(
                    sa.update(runs).values(not_before=sa.func.now(), published_at=None)
                    if backend in BROKER_URLS
                    else sa.update(runs).values(not_before=sa.func.now())
                )
            succeeded = sa.select(sa.func.count()).where(runs.c.status == "succeeded")
            _wait_for(lambda: _count(engine, succeeded) == count, processes, "complete drain")
            return _jobsched_rate(engine, backend, count)
        finally:
            _stop(processes)
            engine.dispose()
            asyncio.run(_purge_broker(url, backend, namespace))


# --- Celery baseline ---------------------------------------------------------------


def _celery_redis() -> redis.Redis:
    """A client of the baseline's Redis database: 15, never jobsched's 0 (it gets flushed)."""
    client = redis.Redis.from_url(celery_baseline.BROKER_URL)
    if client.connection_pool.connection_kwargs.get("db") != celery_baseline.BROKER_REDIS_DATABASE:
        raise RuntimeError("the Celery baseline must use its own Redis database")
    return client


def _enqueue_celery_tasks(count: int) -> float:
    """Put ``count`` noop tasks on the broker over one connection; return the seconds it took."""
    started = time.monotonic()
    with celery_baseline.app.producer_or_acquire() as producer:
        for _ in range(count):
            celery_baseline.noop.apply_async(producer=producer)
    return time.monotonic() - started


def _celery_processes(
    pool: str, concurrency: int, log_directory: Path
) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)}
    celery = str(BIN_DIRECTORY / "celery")
    # No gossip, mingle or heartbeat: cluster chatter between workers, not task work.
    return [
        _start(
            [
                *(celery, "-A", "bench.celery_baseline", "worker", "--loglevel", "WARNING"),
                *("--pool", pool, "--concurrency", str(concurrency), "-n", f"drain{index}@%h"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ],
            env,
            log_directory / f"drain-celery-worker-{index}.log",
        )
        for index in range(WORKER_PROCESSES)
    ]


def _celery_rate(client: redis.Redis, count: int) -> DrainResult:
    timings = [entry.split() for entry in client.lrange(celery_baseline.TIMINGS_KEY, 0, -1)]
    seconds = max(float(end) for _start, end in timings) - min(
        float(start) for start, _end in timings
    )
    return DrainResult("celery/redis", count, seconds, count / seconds)


def measure_celery(count: int, pool: str, concurrency: int, log_directory: Path) -> DrainResult:
    client = _celery_redis()
    client.flushdb()
    try:
        enqueue_seconds = _enqueue_celery_tasks(count)
        logger.info("celery: %d tasks enqueued in %.1f s", count, enqueue_seconds)
        processes = _celery_processes(pool, concurrency, log_directory)
        try:
            timings_done = lambda: client.llen(celery_baseline.TIMINGS_KEY) >= count  # noqa: E731
            _wait_for(timings_done, processes, "complete Celery drain")
        finally:
            _stop(processes)
        return _celery_rate(client, count)
    finally:
        client.flushdb()
        client.close()


# --- report ------------------------------------------------------------------------


def parse_options(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.drain_bench")
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


def _table(results: Sequence[DrainResult], baseline: DrainResult, concurrency: int) -> str:
    rows = [
        [
            f"drain {result.runs} noop, {WORKER_PROCESSES}x{concurrency}, {result.system}",
            f"{result.runs_per_second:.0f}",
            f"{baseline.runs_per_second:.0f}",
            f"{result.runs_per_second / baseline.runs_per_second:.2f}",
        ]
        for result in results
    ]
    return format_table(["scenario", "jobsched runs/s", "Celery+Redis tasks/s", "ratio"], rows)


def run(argv: Sequence[str]) -> BenchmarkReport:
    options = parse_options(argv)
    admin_url = admin_url_from_environment()
    log_directory = Path(os.environ.get("TMPDIR", "/tmp"))  # noqa: S108 - process logs only
    count, concurrency = options.drain_runs, options.drain_concurrency
    logger.info("celery/redis (%s pool): draining %d noop tasks", options.celery_pool, count)
    baseline = measure_celery(count, options.celery_pool, concurrency, log_directory)
    results = []
    for backend in options.drain_backend or BACKENDS:
        logger.info("jobsched/%s: draining %d noop runs", backend, count)
        results.append(measure_jobsched(admin_url, backend, count, concurrency, log_directory))
    data: dict[str, Any] = {
        "machine": describe_machine(admin_url),
        "worker_processes": WORKER_PROCESSES,
        "concurrency_per_worker": concurrency,
        "celery_pool": options.celery_pool,
        "baseline": asdict(baseline),
        "results": [asdict(result) for result in results],
    }
    table = _table(results, baseline, concurrency)
    return BenchmarkReport("drain", table, write_results("drain", data))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(run(sys.argv[1:]).table)


if __name__ == "__main__":
    main()
