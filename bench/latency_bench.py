"""Latency: trigger-to-start of runs triggered one at a time onto idle workers, against Celery.

jobsched, once per queue backend (database, redis, rabbitmq): a fresh PostgreSQL
database, a real ``jobsched api``, two ``jobsched worker`` processes loading
``bench.handlers`` and a ``jobsched scheduler`` (as a deployment has them; with a
broker the API publishes a triggered run itself, and the scheduler's outbox only
catches what that missed). One job of type ``bench_started_at`` is created with
a far-future ``run_at`` (it never fires by itself) and the default concurrency
policy, ``allow`` (every trigger runs, whatever is still running). After a few warm-up
runs, ``--latency-runs`` (500) runs are triggered with ``POST /jobs/{id}/trigger``
one at a time, ``--latency-interval-seconds`` (0.01) apart on a fixed grid; the
client reads the clock just before each request. The handler returns
``time.time()`` as its first act, and that result is stored with the run.
Trigger-to-start is that start time minus the trigger time: the API request, the
commit, the hand-over to the queue, the claim and the handler call.

Celery baseline: two idle ``celery worker`` processes (Redis broker, same pool
size); ``record_start.apply_async`` sent the same number of times, the same
interval apart, with the send time as its argument; the task records its start
time in a Redis list. Both sides read the same machine clock.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import sqlalchemy as sa

from bench import celery_baseline
from bench.deployment import (
    BACKENDS,
    CELERY_BASELINE_NAME,
    api_is_ready,
    celery_redis,
    celery_worker_names,
    jobsched_environment,
    new_namespace,
    purge_broker,
    registered_workers,
    scheduler_leads,
    start_celery_workers,
    start_jobsched,
    sync_engine,
    wait_celery_ready,
)
from bench.handlers import STARTED_AT_TYPE
from bench.processes import free_port, stop, wait_for
from bench.support import (
    BenchmarkReport,
    SummaryRow,
    admin_url_from_environment,
    configure_logging,
    describe_machine,
    format_table,
    fresh_postgres_database,
    percentile,
    write_results,
)
from jobsched.storage.schema import runs

logger = logging.getLogger("bench.latency")
WORKER_PROCESSES = 2
WARMUP_RUNS = 5
# Warm-up runs are this far apart: connections open, code paths warm, workers idle again.
WARMUP_INTERVAL_SECONDS = 0.1
SETTLE_SECONDS = 2.0
CELERY_QUEUE = "bench-latency"
_PERCENTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True, slots=True)
class LatencyResult:
    """Trigger-to-start of ``runs`` runs, in seconds; ``request`` times are the API's answers."""

    system: str  # "jobsched/<backend>" or "celery/redis"
    runs: int
    p50_seconds: float
    p95_seconds: float
    p99_seconds: float
    max_seconds: float
    request_p50_seconds: float

    @classmethod
    def from_samples(
        cls, system: str, latencies: Sequence[float], requests: Sequence[float]
    ) -> LatencyResult:
        p50, p95, p99 = (percentile(latencies, fraction) or 0.0 for fraction in _PERCENTILES)
        request_p50 = percentile(requests, 0.5) or 0.0
        return cls(system, len(latencies), p50, p95, p99, max(latencies), request_p50)


def _on_a_grid(count: int, interval_seconds: float, send: Callable[[float], None]) -> list[float]:
    """Call ``send(epoch)`` ``count`` times, ``interval_seconds`` apart on a fixed grid.

    ``epoch`` is ``time.time()`` read just before the call. A call that overruns
    its slot delays the next one only; the grid does not drift. Returns how long
    each call took.
    """
    durations = []
    first = time.perf_counter()
    for index in range(count):
        delay = first + index * interval_seconds - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # the pacing is the subject here, not a synchronisation
        sent_at, started = time.time(), time.perf_counter()
        send(sent_at)
        durations.append(time.perf_counter() - started)
    return durations


# --- jobsched ----------------------------------------------------------------------


def _create_job(client: httpx.Client) -> str:
    response = client.post(
        "/jobs",
        json={
            "type": STARTED_AT_TYPE,
            "run_at": "2100-01-01T00:00:00Z",  # only the triggers run it
            # concurrency_policy left at its default, "allow": every trigger runs.
            "retry": {"max_attempts": 1},
        },
    )
    if response.status_code != 201:
        raise RuntimeError(f"POST /jobs answered {response.status_code}: {response.text}")
    job_id: str = response.json()["id"]
    return job_id


class _Triggers:
    """Triggers runs of one job and remembers when each was triggered, by run id."""

    def __init__(self, client: httpx.Client, job_id: str) -> None:
        self._client = client
        self._path = f"/jobs/{job_id}/trigger"
        self.sent_at: dict[uuid.UUID, float] = {}

    def __call__(self, sent_at: float) -> None:
        response = self._client.post(self._path)
        response.raise_for_status()
        self.sent_at[uuid.UUID(response.json()["id"])] = sent_at


def _succeeded(engine: sa.Engine) -> int:
    with engine.begin() as connection:
        return connection.execute(
            sa.select(sa.func.count()).where(runs.c.status == "succeeded")
        ).scalar_one()


def _latencies(engine: sa.Engine, sent_at: dict[uuid.UUID, float]) -> list[float]:
    with engine.begin() as connection:
        rows = connection.execute(
            sa.select(runs.c.id, runs.c.result).where(runs.c.id.in_(list(sent_at)))
        ).all()
    return [row.result["started_at"] - sent_at[row.id] for row in rows]


def _start_deployment(
    url: str, backend: str, namespace: str, port: int, concurrency: int
) -> list[subprocess.Popen[bytes]]:
    environment = jobsched_environment(url, backend, namespace)
    worker_arguments = ["worker", "--concurrency", str(concurrency), "--import", "bench.handlers"]
    return [
        start_jobsched(["api", "--port", str(port)], environment, f"latency-{backend}-api.log"),
        start_jobsched(["scheduler"], environment, f"latency-{backend}-scheduler.log"),
        *(
            start_jobsched(worker_arguments, environment, f"latency-{backend}-worker-{index}.log")
            for index in range(WORKER_PROCESSES)
        ),
    ]


def _trigger_runs(
    engine: sa.Engine, client: httpx.Client, count: int, interval_seconds: float
) -> tuple[dict[uuid.UUID, float], list[float]]:
    """Warm up, then trigger ``count`` measured runs; return their trigger times and requests."""
    job_id = _create_job(client)
    _on_a_grid(WARMUP_RUNS, WARMUP_INTERVAL_SECONDS, _Triggers(client, job_id))
    wait_for(lambda: _succeeded(engine) >= WARMUP_RUNS, [], "warm-up runs")
    time.sleep(SETTLE_SECONDS)
    triggers = _Triggers(client, job_id)
    requests = _on_a_grid(count, interval_seconds, triggers)
    return triggers.sent_at, requests


def measure_jobsched(
    admin_url: str, backend: str, count: int, interval_seconds: float, concurrency: int
) -> LatencyResult:
    namespace, port = new_namespace(), free_port()
    base_url = f"http://127.0.0.1:{port}"
    with fresh_postgres_database(admin_url) as url:
        engine = sync_engine(url)
        processes = _start_deployment(url, backend, namespace, port, concurrency)
        try:
            wait_for(
                lambda: (
                    api_is_ready(base_url)
                    and registered_workers(engine) >= WORKER_PROCESSES
                    and scheduler_leads(engine)
                ),
                processes,
                "API ready, workers registered, scheduler leading",
            )
            with httpx.Client(base_url=base_url, timeout=30.0) as client:
                sent_at, requests = _trigger_runs(engine, client, count, interval_seconds)
            total = WARMUP_RUNS + count
            wait_for(lambda: _succeeded(engine) >= total, processes, "every triggered run")
            latencies = _latencies(engine, sent_at)
        finally:
            stop(processes)
            engine.dispose()
            purge_broker(url, backend, namespace)
    return LatencyResult.from_samples(f"jobsched/{backend}", latencies, requests)


# --- Celery baseline ---------------------------------------------------------------


def _send_record_start(sent_at: float) -> None:
    celery_baseline.record_start.apply_async(args=(sent_at,), queue=CELERY_QUEUE)


def _celery_latencies(entries: Sequence[bytes | str]) -> list[float]:
    pairs = [entry.split() for entry in entries]
    return [float(started) - float(sent) for sent, started in pairs]


def measure_celery(count: int, interval_seconds: float, concurrency: int) -> LatencyResult:
    with celery_redis() as client:
        names = celery_worker_names("latency", WORKER_PROCESSES)
        processes = start_celery_workers(names, "threads", concurrency, CELERY_QUEUE, "latency")
        try:
            wait_celery_ready(names, processes)
            _on_a_grid(WARMUP_RUNS, WARMUP_INTERVAL_SECONDS, _send_record_start)

            def started() -> int:
                return client.llen(celery_baseline.STARTS_KEY)

            wait_for(lambda: started() >= WARMUP_RUNS, processes, "warm-up tasks")
            client.delete(celery_baseline.STARTS_KEY)
            time.sleep(SETTLE_SECONDS)
            requests = _on_a_grid(count, interval_seconds, _send_record_start)
            wait_for(lambda: started() >= count, processes, "every task started")
            latencies = _celery_latencies(client.lrange(celery_baseline.STARTS_KEY, 0, -1))
        finally:
            stop(processes)
    return LatencyResult.from_samples("celery/redis", latencies, requests)


# --- report ------------------------------------------------------------------------


def parse_options(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--latency-runs", type=int, default=500, help="runs (and tasks) measured")
    parser.add_argument(
        "--latency-interval-seconds",
        type=float,
        default=0.01,
        help="between two triggers (and two sends)",
    )
    parser.add_argument(
        "--latency-concurrency", type=int, default=10, help="per worker process, both systems"
    )
    parser.add_argument(
        "--latency-backend", action="append", choices=BACKENDS, help="default: all three"
    )
    options, _unknown = parser.parse_known_args(argv)
    return options


def _milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _table(results: Sequence[LatencyResult]) -> str:
    rows = [
        [
            result.system,
            result.runs,
            _milliseconds(result.p50_seconds),
            _milliseconds(result.p95_seconds),
            _milliseconds(result.p99_seconds),
            _milliseconds(result.max_seconds),
            _milliseconds(result.request_p50_seconds),
        ]
        for result in results
    ]
    headers = ["system", "runs", "p50 ms", "p95 ms", "p99 ms", "max ms", "trigger request p50 ms"]
    return format_table(headers, rows)


def summary_rows(
    results: Sequence[LatencyResult], baseline: LatencyResult, concurrency: int
) -> list[SummaryRow]:
    baseline_name = f"{CELERY_BASELINE_NAME}, {WORKER_PROCESSES}x{concurrency} threads"
    rows = []
    for result in results:
        backend = result.system.split("/", 1)[1]
        for label, mine, theirs in [
            ("p50", result.p50_seconds, baseline.p50_seconds),
            ("p95", result.p95_seconds, baseline.p95_seconds),
            ("p99", result.p99_seconds, baseline.p99_seconds),
        ]:
            rows.append(
                SummaryRow(
                    "latency",
                    backend,
                    f"trigger-to-start {label} ms",
                    mine * 1000,
                    theirs * 1000,
                    baseline_name,
                    False,
                    1,
                )
            )
    return rows


def run(argv: Sequence[str]) -> BenchmarkReport:
    options = parse_options(argv)
    admin_url = admin_url_from_environment()
    count, interval = options.latency_runs, options.latency_interval_seconds
    concurrency = options.latency_concurrency
    logger.info("celery/redis: %d tasks %.0f ms apart", count, interval * 1000)
    baseline = measure_celery(count, interval, concurrency)
    results = []
    for backend in options.latency_backend or BACKENDS:
        logger.info("jobsched/%s: %d triggers %.0f ms apart", backend, count, interval * 1000)
        results.append(measure_jobsched(admin_url, backend, count, interval, concurrency))
    data: dict[str, Any] = {
        "machine": describe_machine(admin_url),
        "interval_seconds": interval,
        "concurrency_per_worker": concurrency,
        "worker_processes": WORKER_PROCESSES,
        "baseline": asdict(baseline),
        "results": [asdict(result) for result in results],
        "load_average_after": list(os.getloadavg()),
    }
    table = _table([*results, baseline])
    rows = summary_rows(results, baseline, concurrency)
    return BenchmarkReport("latency", table, write_results("latency", data), tuple(rows))


def main() -> None:
    configure_logging()
    print(run(sys.argv[1:]).table)


if __name__ == "__main__":
    main()
