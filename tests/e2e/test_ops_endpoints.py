"""The scheduler's and worker's operations port: real health, readiness and a true queue depth.

Real ``jobsched scheduler`` / ``jobsched worker`` processes on a PostgreSQL
database of the test's own. The database is made unreachable for them by
refusing its connections (``ALLOW_CONNECTIONS false``, then ending its sessions),
the broker by cutting a TCP relay the worker reaches Redis through: nothing the
other tests share is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from jobsched.core.models import JobSpec, RetryPolicy, RunStatus
from jobsched.storage.database import SQLStorage
from tests.conftest import POSTGRES_ADMIN_URL
from tests.e2e.broker_services import purge_broker_namespace
from tests.e2e.processes import JobschedProcess, free_port, metric_value, wait_until
from tests.queue_backends import BACKEND_URLS, BACKENDS

pytestmark = pytest.mark.e2e


def _env(database_url: str, namespace: str, metrics_port: int, **extra: str) -> dict[str, str]:
    return {
        "JOBSCHED_DATABASE_URL": database_url,
        "JOBSCHED_QUEUE_NAMESPACE": namespace,
        "JOBSCHED_METRICS_PORT": str(metrics_port),
        "JOBSCHED_SCHEDULER_RESCUE_INTERVAL_SECONDS": "0.2",
        "JOBSCHED_QUEUE_RECONNECT_BACKOFF_MAX_SECONDS": "0.5",
        "JOBSCHED_WORKER_SHUTDOWN_GRACE_SECONDS": "1",
        **extra,
    }


@contextlib.contextmanager
def _process(command: list[str], env: dict[str, str], log: Path) -> Iterator[JobschedProcess]:
    process = JobschedProcess(command, env, log).start()
    try:
        yield process
    finally:
        process.stop()


def _database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _refuse_connections(database: str, refuse: bool) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS {str(not refuse).lower()}")  # type: ignore[arg-type]
        if refuse:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=10).status_code
    except httpx.TransportError:
        return 0


def test_scheduler_and_worker_answer_health_readiness_and_only_their_paths(
    postgres_url: str, tmp_path: Path
) -> None:
    namespace = f"ops-{uuid.uuid4().hex[:8]}"
    ports = {"scheduler": free_port(), "worker": free_port()}
    database = _database_name(postgres_url)
    with contextlib.ExitStack() as stack:
        for role, port in ports.items():
            env = _env(postgres_url, namespace, port)
            stack.enter_context(_process([role], env, tmp_path / f"{role}.log"))
        try:
            for role, port in ports.items():
                base = f"http://127.0.0.1:{port}"
                wait_until(
                    lambda base=base: _status(f"{base}/readyz") == 200,  # type: ignore[misc]
                    timeout_seconds=30,
                    message=f"{role} ready",
                )
                health = httpx.get(f"{base}/healthz")
                assert (health.status_code, health.json()) == (200, {"status": "ok"})
                scraped = httpx.get(f"{base}/metrics")
                assert scraped.headers["content-type"].startswith("text/plain")
                assert "# TYPE queue_depth gauge" in scraped.text
                unknown = httpx.get(f"{base}/nothing-here")
                assert unknown.status_code == 404
                assert unknown.headers["content-type"] == "application/problem+json"
                posted = httpx.post(f"{base}/metrics")
                assert posted.status_code == 405
                assert posted.headers["allow"] == "GET, HEAD"
                head = httpx.head(f"{base}/healthz")
                assert (head.status_code, head.content) == (200, b"")

            _refuse_connections(database, refuse=True)
            for role, port in ports.items():
                base = f"http://127.0.0.1:{port}"
                wait_until(
                    lambda base=base: _status(f"{base}/readyz") == 503,  # type: ignore[misc]
                    timeout_seconds=30,
                    message=f"{role} not ready once the database refuses it",
                )
                problem = httpx.get(f"{base}/readyz", timeout=10)
                assert problem.headers["content-type"] == "application/problem+json"
                assert [error["field"] for error in problem.json()["errors"]] == ["storage"]
                # Alive all the same: a probe must not restart a process for an outage.
                assert httpx.get(f"{base}/healthz").status_code == 200
        finally:
            _refuse_connections(database, refuse=False)
        for role, port in ports.items():
            wait_until(
                lambda port=port: _status(f"http://127.0.0.1:{port}/readyz") == 200,  # type: ignore[misc]
                timeout_seconds=30,
                message=f"{role} ready again once the database is back",
            )


class _Relay:
    """A TCP relay to ``target`` that can be cut (every connection closed, the port refused)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        listener.settimeout(0.2)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


async def test_worker_and_api_readiness_name_the_broker_when_it_is_cut_off(
    postgres_url: str, tmp_path: Path
) -> None:
    relay = _Relay(("127.0.0.1", 6379))
    relay.open()
    namespace = f"ops-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = _env(
        postgres_url,
        namespace,
        port,
        JOBSCHED_QUEUE_URL=f"redis://127.0.0.1:{relay.port}/0",
    )
    api_port = free_port()
    ready = {
        "worker": f"http://127.0.0.1:{port}/readyz",
        "api": f"http://127.0.0.1:{api_port}/readyz",
    }
    try:
        with (
            _process(["worker"], env, tmp_path / "worker.log"),
            _process(["api", "--port", str(api_port)], env, tmp_path / "api.log"),
        ):
            for role, url in ready.items():
                wait_until(
                    lambda url=url: _status(url) == 200,  # type: ignore[misc]
                    timeout_seconds=30,
                    message=f"{role} ready",
                )
            relay.cut()
            for role, url in ready.items():
                wait_until(
                    lambda url=url: _status(url) == 503,  # type: ignore[misc]
                    timeout_seconds=30,
                    message=f"{role} not ready once the broker is cut off",
                )
                problem = httpx.get(url, timeout=10).json()  # noqa: ASYNC210 - a test's probe
                assert [error["field"] for error in problem["errors"]] == ["broker"], role
            relay.open()
            for role, url in ready.items():
                wait_until(
                    lambda url=url: _status(url) == 200,  # type: ignore[misc]
                    timeout_seconds=30,
                    message=f"{role} ready again once the broker is relayed",
                )
    finally:
        relay.cut()
        storage = SQLStorage.from_url(postgres_url)
        try:
            await purge_broker_namespace(namespace, ["default"], storage)
        finally:
            await storage.close()


def _depth(metrics_url: str) -> float | None:
    try:
        text = httpx.get(metrics_url, timeout=10).text
    except httpx.TransportError:  # not listening yet
        return None
    if 'queue_depth{queue="default"}' not in text:
        return None
    return metric_value(text, "queue_depth", queue="default")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_queue_depth_goes_back_to_zero_once_the_queue_drains(
    backend: str, postgres_url: str, tmp_path: Path
) -> None:
    namespace = f"ops-{uuid.uuid4().hex[:8]}"
    storage = SQLStorage.from_url(postgres_url)
    runs = 20
    try:
        now = await storage.now()
        for _ in range(runs):
            await storage.create_job(JobSpec(type="noop", payload={}), next_run_at=now, now=now)
        scheduler_port = free_port()
        queue_url = BACKEND_URLS[backend]
        extra = {} if queue_url is None else {"JOBSCHED_QUEUE_URL": queue_url}
        env = _env(postgres_url, namespace, scheduler_port, **extra)
        metrics_url = f"http://127.0.0.1:{scheduler_port}/metrics"
        with _process(["scheduler"], env, tmp_path / "scheduler.log"):
            # At least one message per run: a scheduler starting on a new namespace
            # republishes what is waiting, so a broker may briefly hold duplicates
            # (each is claimed once; the spare deliveries are acked unclaimed).
            wait_until(
                lambda: (_depth(metrics_url) or 0) >= runs,
                timeout_seconds=30,
                message=f"queue_depth of at least {runs} with no worker",
            )
            worker_env = {**env, "JOBSCHED_METRICS_PORT": "0"}
            with _process(["worker"], worker_env, tmp_path / "worker.log"):
                wait_until(
                    lambda: _depth(metrics_url) == 0,
                    timeout_seconds=30,
                    message="queue_depth back to 0 once the worker drained the queue",
                )
    finally:
        try:
            await purge_broker_namespace(namespace, ["default"], storage)
        finally:
            await storage.close()


E2E_DIRECTORY = Path(__file__).parent


async def _job_run(storage: SQLStorage, spec: JobSpec) -> uuid.UUID:
    """A one-time job due now; the id of the run the scheduler fires for it."""
    now = await storage.now()
    job = await storage.create_job(spec, next_run_at=now, now=now)

    async def fired() -> list[uuid.UUID]:
        page = await storage.list_runs(job_id=job.id, status=None, limit=1, cursor=None)
        return [run.id for run in page.items]

    (run_id,) = await _eventually(fired, f"a run of {spec.type}")
    return run_id


async def _eventually(probe: Any, message: str, timeout_seconds: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    while asyncio.get_running_loop().time() < deadline:
        if value := await probe():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_seconds}s: {message}")


async def _status_of(storage: SQLStorage, run_id: uuid.UUID) -> RunStatus:
    return (await storage.get_run(run_id)).status


async def test_metrics_count_every_outcome_busy_slots_rescues_and_the_build(
    postgres_url: str, tmp_path: Path
) -> None:
    namespace = f"ops-{uuid.uuid4().hex[:8]}"
    scheduler_port, worker_port = free_port(), free_port()
    fast_leases = {
        "JOBSCHED_WORKER_LEASE_SECONDS": "2",
        "JOBSCHED_WORKER_HEARTBEAT_INTERVAL_SECONDS": "0.3",
        "PYTHONPATH": str(E2E_DIRECTORY),
    }
    env = _env(postgres_url, namespace, scheduler_port, **fast_leases)
    worker_env = {**env, "JOBSCHED_METRICS_PORT": str(worker_port)}
    worker_command = ["worker", "--import", "handlers_for_tests"]
    once = RetryPolicy(max_attempts=1)
    scheduler_metrics = f"http://127.0.0.1:{scheduler_port}/metrics"
    worker_metrics = f"http://127.0.0.1:{worker_port}/metrics"
    storage = SQLStorage.from_url(postgres_url)
    try:
        with _process(["scheduler"], env, tmp_path / "scheduler.log"):
            with _process(worker_command, worker_env, tmp_path / "worker.log"):
                succeeded = await _job_run(storage, JobSpec(type="noop", payload={}))
                failed = await _job_run(
                    storage, JobSpec(type="always_fails", payload={}, retry=once)
                )
                timed_out = await _job_run(
                    storage,
                    JobSpec(
                        type="sleepy",
                        payload={"sleep_seconds": 30},
                        timeout_seconds=0.3,
                        retry=once,
                    ),
                )
                for run_id in (succeeded, failed, timed_out):
                    await _eventually(
                        lambda run_id=run_id: _finished(storage, run_id), f"run {run_id} ends"
                    )
                cancelled = await _job_run(
                    storage, JobSpec(type="sleepy", payload={"sleep_seconds": 30}, retry=once)
                )
                await _eventually(lambda: _running(storage, cancelled), "the long run is running")
                busy = metric_value(await _scrape(worker_metrics), "worker_slots_busy")
                assert busy == 1
                await storage.cancel_run(cancelled)
                await _eventually(
                    lambda: _worker_saw_cancel(worker_metrics), "the worker stops the handler"
                )
                text = await _scrape(worker_metrics)

            for outcome in ("succeeded", "failed", "timed_out", "cancelled"):
                count = metric_value(text, "job_duration_seconds_count", outcome=outcome)
                assert count == 1, outcome
            assert metric_value(text, "jobs_dead_total") == 2  # failed and timed out, no retry
            assert metric_value(text, "worker_slots_busy") == 0
            version = metadata.version("jobsched")
            assert metric_value(text, "build_info", version=version) == 1

            # A worker killed mid-run: the scheduler takes the run back once its lease ends.
            with _process(worker_command, worker_env, tmp_path / "worker-2.log") as doomed:
                stranded = await _job_run(
                    storage, JobSpec(type="sleepy", payload={"sleep_seconds": 30}, retry=once)
                )
                await _eventually(lambda: _running(storage, stranded), "the run is running")
                doomed.process.send_signal(signal.SIGKILL)
                doomed.process.wait()
            await _eventually(
                lambda: _scraped(scheduler_metrics, "lease_rescues_total", minimum=1),
                "lease_rescues_total counts the rescue",
            )
            scheduler_text = await _scrape(scheduler_metrics)
            assert metric_value(scheduler_text, "outbox_backlog") == 0  # the database queue
            assert metric_value(scheduler_text, "scheduler_fire_lag_seconds_count") >= 5
            assert metric_value(scheduler_text, "build_info", version=version) == 1
    finally:
        await storage.close()


async def _finished(storage: SQLStorage, run_id: uuid.UUID) -> bool:
    return await _status_of(storage, run_id) in {RunStatus.SUCCEEDED, RunStatus.DEAD}


async def _running(storage: SQLStorage, run_id: uuid.UUID) -> bool:
    return await _status_of(storage, run_id) is RunStatus.RUNNING


async def _worker_saw_cancel(metrics_url: str) -> bool:
    return await _scraped(metrics_url, "jobs_cancelled_total", minimum=1)


async def _scrape(metrics_url: str) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(metrics_url)).text


async def _scraped(metrics_url: str, name: str, *, minimum: float) -> bool:
    return metric_value(await _scrape(metrics_url), name) >= minimum


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_handlers_log_line_names_its_run_attempt_and_job(
    log_format: str, postgres_url: str, tmp_path: Path
) -> None:
    namespace = f"ops-{uuid.uuid4().hex[:8]}"
    env = _env(
        postgres_url,
        namespace,
        0,
        PYTHONPATH=str(E2E_DIRECTORY),
        JOBSCHED_LOGGING_FORMAT=log_format,
    )
    storage = SQLStorage.from_url(postgres_url)
    log = tmp_path / "worker.log"
    try:
        with (
            _process(["scheduler"], env, tmp_path / "scheduler.log"),
            _process(["worker", "--import", "handlers_for_tests"], env, log),
        ):
            run_id = await _job_run(storage, JobSpec(type="chatty", payload={"item": "page-7"}))
            await _eventually(lambda: _finished(storage, run_id), "the chatty run ends")
        run = await storage.get_run(run_id)
    finally:
        await storage.close()
    (line,) = [line for line in log.read_text().splitlines() if "working on page-7" in line]
    expected = {
        "run_id": str(run_id),
        "attempt": "1",
        "job_type": "chatty",
        "job_id": str(run.job_id),
    }
    if log_format == "json":
        fields = {key: str(value) for key, value in json.loads(line).items()}
        assert fields["message"] == "working on page-7"
    else:
        fields = dict(pair.split("=", 1) for pair in line.split() if "=" in pair)
    assert {key: fields.get(key) for key in expected} == expected


async def test_a_worker_frozen_past_its_leases_says_it_was_frozen(
    postgres_url: str, tmp_path: Path
) -> None:
    env = _env(
        postgres_url,
        f"ops-{uuid.uuid4().hex[:8]}",
        0,
        PYTHONPATH=str(E2E_DIRECTORY),
        JOBSCHED_WORKER_LEASE_SECONDS="2",
        JOBSCHED_WORKER_HEARTBEAT_INTERVAL_SECONDS="0.3",
    )
    storage = SQLStorage.from_url(postgres_url)
    log = tmp_path / "worker.log"
    try:
        with (
            _process(["scheduler"], env, tmp_path / "scheduler.log"),
            _process(["worker", "--import", "handlers_for_tests"], env, log) as worker,
        ):
            spec = JobSpec(type="sleepy", payload={"sleep_seconds": 30})
            run_id = await _job_run(storage, spec)
            await _eventually(lambda: _running(storage, run_id), "the run is running")
            worker.process.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(4)  # twice the lease
            finally:
                worker.process.send_signal(signal.SIGCONT)

            async def stopped_the_run() -> bool:
                return "lease not renewed" in log.read_text()

            await _eventually(stopped_the_run, "the worker stops the run it lost")
    finally:
        await storage.close()
    text = log.read_text()
    assert "this worker did not run for" in text
    assert "this worker was frozen for" in text
    assert "did not reach the database" not in text
