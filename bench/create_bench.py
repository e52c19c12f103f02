"""Create: jobs per second through ``POST /jobs`` and ``POST /jobs/batch``, against Celery.

jobsched, once per queue backend (database, redis, rabbitmq): a fresh PostgreSQL
database and one real ``jobsched api`` process (uvicorn, on a free port),
configured for that backend as a deployment would be (with Redis, the job cache
too). Once ``/readyz`` answers and the process has settled (idle RSS):

* **single**: ``--create-jobs`` one-time ``noop`` jobs, one per ``POST /jobs``,
  from ``--create-clients`` (8) concurrent clients on keep-alive connections;
* **batch**: ``--create-batch-jobs`` jobs through ``POST /jobs/batch``, 1,000 per
  request, one client.

Each phase reports jobs/s (jobs / wall time, every answer a 201), the API
process's CPU seconds per 1,000 jobs, and the client's own CPU (the client shares
the two cores with the server, so it must stay small beside it). The API's busy
RSS is the peak sampled over both phases.

Celery baseline (Redis database 15, no workers, no result backend): the same
number of ``noop`` tasks sent with ``apply_async``, from 8 concurrent threads for
the single row and from one producer publishing in a loop for the batch row
(Celery has no batch publish). Celery sends a message; jobsched also validates
each job, plans its first run and commits it to PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from bench import celery_baseline
from bench.deployment import (
    BACKENDS,
    CELERY_BASELINE_NAME,
    api_is_ready,
    celery_redis,
    jobsched_environment,
    new_namespace,
    purge_broker,
    start_jobsched,
)
from bench.processes import RoleUsage, UsageMeter, free_port, stop, wait_for
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

logger = logging.getLogger("bench.create")
BATCH_SIZE = 1000  # the most POST /jobs/batch takes
SETTLE_SECONDS = 2.0
_JOB = {"type": "noop"}  # one-time, due at once: the commonest job there is


@dataclass(frozen=True, slots=True)
class CreatePhase:
    """One way of creating ``jobs``: how fast, and what it cost the server and the client."""

    system: str  # "jobsched/<backend>" or "celery/redis"
    method: str  # "single" or "batch"
    jobs: int
    seconds: float
    client_cpu_seconds: float
    server: RoleUsage | None  # the API process (None for Celery: there is no server)

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds

    @property
    def server_cpu_seconds_per_1000(self) -> float | None:
        return None if self.server is None else self.server.cpu_seconds_per_1000(self.jobs)


@dataclass(frozen=True, slots=True)
class CreateResult:
    """Both phases of one system: ``backend`` is the queue backend (Celery's: redis)."""

    backend: str
    single: CreatePhase
    batch: CreatePhase


# --- jobsched ----------------------------------------------------------------------


async def _read_status(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (head and ``Content-Length`` body); return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def _post_singles(port: int, count: int, clients: int) -> None:
    """``count`` POST /jobs, ``clients`` at a time, each client on its own keep-alive connection.

    Raw HTTP/1.1 over asyncio streams rather than an HTTP client library: the
    client shares two cores with the server, and a full client costs several
    times the CPU per request (about 1 ms with httpx against 0.06 ms here).
    """
    body = json.dumps(_JOB).encode()
    request = (
        f"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    remaining = iter(range(count))

    async def one_client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in remaining:
                writer.write(request)
                status = await _read_status(reader)
                if status != 201:
                    raise RuntimeError(f"POST /jobs answered {status}")
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(one_client() for _ in range(clients)))


def _post_batches(base_url: str, count: int) -> None:
    body = json.dumps({"jobs": [_JOB] * BATCH_SIZE}).encode()
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=base_url, timeout=120.0) as client:
        for start in range(0, count, BATCH_SIZE):
            size = min(BATCH_SIZE, count - start)
            content = body if size == BATCH_SIZE else json.dumps({"jobs": [_JOB] * size}).encode()
            response = client.post("/jobs/batch", content=content, headers=headers)
            if response.status_code != 201:
                raise RuntimeError(f"POST /jobs/batch answered {response.status_code}")


def _timed(work: Callable[..., object], *arguments: object) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (the client's) for ``work(*arguments)``."""
    cpu_before, started = time.process_time(), time.perf_counter()
    work(*arguments)
    return time.perf_counter() - started, time.process_time() - cpu_before


def measure_jobsched(
    admin_url: str, backend: str, single_jobs: int, batch_jobs: int, clients: int
) -> CreateResult:
    namespace, port = new_namespace(), free_port()
    base_url = f"http://127.0.0.1:{port}"
    system = f"jobsched/{backend}"
    with fresh_postgres_database(admin_url) as url:
        environment = jobsched_environment(url, backend, namespace)
        api = start_jobsched(["api", "--port", str(port)], environment, f"create-{backend}-api.log")
        try:
            wait_for(lambda: api_is_ready(base_url), [api], "API ready")
            time.sleep(SETTLE_SECONDS)
            meter = UsageMeter({"api": [api.pid]})
            meter.record_idle()
            with meter.busy():
                single = _timed(lambda: asyncio.run(_post_singles(port, single_jobs, clients)))
            single_usage = meter.usage()[0]
            with meter.busy():
                batch = _timed(_post_batches, base_url, batch_jobs)
            batch_usage = meter.usage()[0]
        finally:
            stop([api])
            purge_broker(url, backend, namespace)
    return CreateResult(
        backend,
        CreatePhase(system, "single", single_jobs, *single, single_usage),
        CreatePhase(system, "batch", batch_jobs, *batch, batch_usage),
    )


# --- Celery baseline ---------------------------------------------------------------


def _send_from_threads(count: int, threads: int) -> None:
    """``count`` ``apply_async`` calls from ``threads`` threads (Celery's producer pool)."""
    share, extra = divmod(count, threads)

    def send(tasks: int) -> None:
        for _ in range(tasks):
            celery_baseline.noop.apply_async()

    workers = [
        threading.Thread(target=send, args=(share + (1 if index < extra else 0),))
        for index in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def measure_celery(single_jobs: int, batch_jobs: int, clients: int) -> CreateResult:
    with celery_redis() as client:
        celery_baseline.enqueue_noops(100)  # open the broker connections before timing
        client.flushdb()
        single = _timed(_send_from_threads, single_jobs, clients)
        client.flushdb()
        batch = _timed(celery_baseline.enqueue_noops, batch_jobs)
    return CreateResult(
        "redis",
        CreatePhase("celery/redis", "single", single_jobs, *single, None),
        CreatePhase("celery/redis", "batch", batch_jobs, *batch, None),
    )


# --- report ------------------------------------------------------------------------


def parse_options(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.create_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--create-jobs", type=int, default=4000, help="jobs created one per POST /jobs"
    )
    parser.add_argument(
        "--create-batch-jobs", type=int, default=20_000, help="jobs created by POST /jobs/batch"
    )
    parser.add_argument(
        "--create-clients", type=int, default=8, help="concurrent clients of POST /jobs"
    )
    parser.add_argument(
        "--create-backend", action="append", choices=BACKENDS, help="default: all three"
    )
    options, _unknown = parser.parse_known_args(argv)
    return options


def _table(phases: Sequence[CreatePhase]) -> str:
    def per_thousand(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    rows = [
        [
            phase.system,
            "POST /jobs" if phase.method == "single" else "POST /jobs/batch",
            phase.jobs,
            f"{phase.jobs_per_second:.0f}",
            per_thousand(phase.server_cpu_seconds_per_1000),
            f"{phase.client_cpu_seconds / phase.jobs * 1000:.2f}",
            "-" if phase.server is None else f"{phase.server.idle_rss_mib:.1f}",
            "-" if phase.server is None else f"{phase.server.busy_rss_mib:.1f}",
        ]
        for phase in phases
    ]
    headers = [
        "system",
        "method",
        "jobs",
        "jobs/s",
        "API CPU s/1k jobs",
        "client CPU s/1k jobs",
        "API idle RSS MiB",
        "API busy RSS MiB",
    ]
    return format_table(headers, rows)


def _api_rows(result: CreateResult) -> list[SummaryRow]:
    """The API process's memory and CPU (the "api" part of the resources scenario)."""
    backend, single, batch = result.backend, result.single, result.batch
    assert single.server is not None
    assert batch.server is not None
    figures = [
        ("api idle RSS MiB", single.server.idle_rss_mib, 1),
        ("api busy RSS MiB", batch.server.busy_rss_mib, 1),  # the peak over both phases
        ("api CPU s/1k jobs (POST /jobs)", single.server_cpu_seconds_per_1000, 2),
        ("api CPU s/1k jobs (POST /jobs/batch)", batch.server_cpu_seconds_per_1000, 2),
    ]
    no_api = "none (Celery has no API)"
    return [
        SummaryRow("resources", backend, metric, value, None, no_api, False, digits)
        for metric, value, digits in figures
    ]


def summary_rows(
    results: Sequence[CreateResult], baseline: CreateResult, clients: int
) -> list[SummaryRow]:
    """Both creation rates per backend, then the API's resources per backend."""
    rows = []
    for result in results:
        rows += [
            SummaryRow(
                "create",
                result.backend,
                f"jobs/s, POST /jobs ({clients} clients)",
                result.single.jobs_per_second,
                baseline.single.jobs_per_second,
                f"{CELERY_BASELINE_NAME}: apply_async from {clients} threads",
                True,
            ),
            SummaryRow(
                "create",
                result.backend,
                f"jobs/s, POST /jobs/batch ({BATCH_SIZE}/request)",
                result.batch.jobs_per_second,
                baseline.batch.jobs_per_second,
                f"{CELERY_BASELINE_NAME}: apply_async loop, one producer",
                True,
            ),
        ]
    for result in results:
        rows += _api_rows(result)
    return rows


def run(argv: Sequence[str]) -> BenchmarkReport:
    options = parse_options(argv)
    admin_url = admin_url_from_environment()
    single_jobs, batch_jobs = options.create_jobs, options.create_batch_jobs
    clients = options.create_clients
    logger.info("celery/redis: sending %d + %d noop tasks", single_jobs, batch_jobs)
    baseline = measure_celery(single_jobs, batch_jobs, clients)
    results = []
    for backend in options.create_backend or BACKENDS:
        logger.info("jobsched/%s: creating %d + %d jobs", backend, single_jobs, batch_jobs)
        results.append(measure_jobsched(admin_url, backend, single_jobs, batch_jobs, clients))
    data: dict[str, Any] = {
        "machine": describe_machine(admin_url),
        "clients": clients,
        "batch_size": BATCH_SIZE,
        "baseline": asdict(baseline),
        "results": [asdict(result) for result in results],
        "load_average_after": list(os.getloadavg()),
    }
    phases = [phase for result in [*results, baseline] for phase in (result.single, result.batch)]
    table = _table(phases)
    rows = summary_rows(results, baseline, clients)
    return BenchmarkReport("create", table, write_results("create", data), tuple(rows))


def main() -> None:
    configure_logging()
    print(run(sys.argv[1:]).table)


if __name__ == "__main__":
    main()
