"""The deployments the benchmarks start: jobsched on one queue backend, and the Celery baseline.

jobsched's processes are the real ``jobsched api|worker|scheduler`` commands,
configured as an operator would, through ``JOBSCHED_*`` variables: the benchmark's
own PostgreSQL database, the queue backend's URL, a namespace of its own on the
broker (removed afterwards), and with a Redis queue the API's job cache on the
same Redis, as a Redis deployment has it. ``bench`` is importable in them, so a
worker can load ``bench.handlers``.

Celery's workers are ``celery -A bench.celery_baseline worker``, on Redis database
15 (never jobsched's 0: it is flushed before and after, so two benchmark runs at
once would spoil each other's baseline; on two cores they would spoil every
figure anyway).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import aio_pika
import httpx
import psycopg
import redis
import sqlalchemy as sa

from bench import celery_baseline
from bench.processes import BIN_DIRECTORY, REPOSITORY_ROOT, start, wait_for
from jobsched.config.settings import QueueSettings
from jobsched.queue import create_queue
from jobsched.queue.rabbitmq_topology import Topology
from jobsched.storage.database import SQLStorage
from jobsched.storage.leadership import HOUSEKEEPING_LOCK_KEY
from jobsched.storage.schema import workers

BACKENDS = ("database", "redis", "rabbitmq")
BROKER_URLS: dict[str, str] = {
    "redis": "redis://127.0.0.1:6379/0",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/",
}
JOBSCHED_QUEUE_NAME = "default"
JOBSCHED = str(BIN_DIRECTORY / "jobsched")
CELERY = str(BIN_DIRECTORY / "celery")
CELERY_BASELINE_NAME = "Celery+Redis"


def new_namespace() -> str:
    """A broker namespace of one benchmark run: nothing else reads or writes under it."""
    return f"bench-{uuid.uuid4().hex[:12]}"


def _with_repository_on_path(environment: dict[str, str]) -> dict[str, str]:
    inherited = environment.get("PYTHONPATH")
    root = str(REPOSITORY_ROOT)
    environment["PYTHONPATH"] = f"{root}{os.pathsep}{inherited}" if inherited else root
    return environment


def jobsched_environment(url: str, backend: str, namespace: str) -> dict[str, str]:
    """The environment of every jobsched process of one deployment on ``backend``."""
    environment = {
        **os.environ,
        "JOBSCHED_DATABASE_URL": url,
        "JOBSCHED_METRICS_PORT": "0",
        "JOBSCHED_LOGGING_LEVEL": "WARNING",
        "JOBSCHED_QUEUE_NAMESPACE": namespace,
    }
    if backend in BROKER_URLS:
        environment["JOBSCHED_QUEUE_URL"] = BROKER_URLS[backend]
    if backend == "redis":
        environment["JOBSCHED_CACHE_URL"] = BROKER_URLS["redis"]
    return _with_repository_on_path(environment)


def start_jobsched(
    arguments: Sequence[str], environment: dict[str, str], log_name: str
) -> subprocess.Popen[bytes]:
    """``jobsched <arguments>``, e.g. ``["worker", "--concurrency", "50"]``."""
    return start([JOBSCHED, *arguments], environment, log_name)


def sync_engine(url: str) -> sa.Engine:
    """A psycopg 3 engine on the benchmark database, for the benchmark's own queries."""
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def registered_workers(engine: sa.Engine) -> int:
    with engine.begin() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(workers)).scalar_one()


def scheduler_leads(engine: sa.Engine) -> bool:
    """Whether a scheduler holds the housekeeping lock: its loop is running."""
    query = sa.text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :key"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    with engine.begin() as connection:
        return bool(connection.execute(query, {"key": HOUSEKEEPING_LOCK_KEY}).scalar_one())


def postgres_backends(admin_url: str, url: str) -> Callable[[], list[int]]:
    """A lookup of the PostgreSQL backends serving the database at ``url`` (its connections)."""
    database_name = url.rsplit("/", 1)[1]

    def lookup() -> list[int]:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            rows = connection.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = %s AND backend_type = 'client backend'",
                [database_name],
            ).fetchall()
        return [int(row[0]) for row in rows]

    return lookup


def broker_server_pids(backend: str) -> list[int]:
    """The broker's server process on this machine: ``redis-server``, RabbitMQ's Erlang VM.

    Shared with anything else using the broker meanwhile; empty for the database
    queue, or when the broker does not run here.
    """
    if backend == "redis":
        client = redis.Redis.from_url(BROKER_URLS["redis"])
        try:
            return [int(client.info("server")["process_id"])]
        finally:
            client.close()
    if backend == "rabbitmq":
        return [
            int(process.name)
            for process in Path("/proc").iterdir()
            if process.name.isdigit() and _command_name(process) == "beam.smp"
        ]
    return []


def _command_name(process: Path) -> str:
    try:
        return (process / "comm").read_text().strip()
    except OSError:  # gone meanwhile
        return ""


def api_is_ready(base_url: str) -> bool:
    """``GET /readyz`` answers 200: the API serves and its database answers."""
    try:
        return httpx.get(f"{base_url}/readyz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


async def _purge_broker(url: str, backend: str, namespace: str) -> None:
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


def purge_broker(url: str, backend: str, namespace: str) -> None:
    """Delete what a deployment left under ``namespace`` on the broker (the cache's keys too).

    By name rather than through a queue that declared it: the processes are gone.
    """
    asyncio.run(_purge_broker(url, backend, namespace))


# --- Celery --------------------------------------------------------------------------


@contextmanager
def celery_redis() -> Iterator[redis.Redis]:
    """A client of the baseline's Redis database, empty on the way in and on the way out.

    That database is 15, never jobsched's 0: it is flushed.
    """
    client = redis.Redis.from_url(celery_baseline.BROKER_URL)
    if client.connection_pool.connection_kwargs.get("db") != celery_baseline.BROKER_REDIS_DATABASE:
        client.close()
        raise RuntimeError("the Celery baseline must use its own Redis database")
    try:
        client.flushdb()
        yield client
    finally:
        client.flushdb()
        client.close()


def celery_worker_names(prefix: str, count: int) -> list[str]:
    """Names for ``count`` workers, unique to this run: pings and broadcasts reach only them."""
    run = uuid.uuid4().hex[:6]
    return [f"{prefix}{index}-{run}@{socket.gethostname()}" for index in range(count)]


def start_celery_workers(
    names: Sequence[str], pool: str, concurrency: int, queue: str, log_prefix: str
) -> list[subprocess.Popen[bytes]]:
    """A Celery worker per node name, taking tasks from ``queue``; see ``wait_celery_ready``."""
    environment = _with_repository_on_path(dict(os.environ))
    # No gossip, mingle or heartbeat: cluster chatter between workers, not task work.
    return [
        start(
            [
                *(CELERY, "-A", "bench.celery_baseline", "worker", "--loglevel", "WARNING"),
                *("--pool", pool, "--concurrency", str(concurrency), "-n", name, "-Q", queue),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ],
            environment,
            f"{log_prefix}-celery-worker-{index}.log",
        )
        for index, name in enumerate(names)
    ]


def wait_celery_ready(names: Sequence[str], processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """Wait until every named worker answers a ping: it is consuming."""

    def all_answer() -> bool:
        replies = celery_baseline.app.control.ping(destination=list(names), timeout=0.5)
        return len(replies) == len(names)

    wait_for(all_answer, processes, "Celery workers ready")
