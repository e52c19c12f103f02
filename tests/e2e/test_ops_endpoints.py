"""The scheduler's and worker's operations port: real health, readiness and a true queue depth.

Real ``jobsched scheduler`` / ``jobsched worker`` processes on a PostgreSQL
database of the test's own. The database is made unreachable for them by
refusing its connections (``ALLOW_CONNECTIONS false``, then ending its sessions),
the broker by cutting a TCP relay the worker reaches Redis through: nothing the
other tests share is stopped.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from jobsched.core.models import JobSpec
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
            seen: list[float | None] = []
            try:
                wait_until(
                    lambda: seen.append(_depth(metrics_url)) or seen[-1] == runs,
                    timeout_seconds=30,
                    message=f"queue_depth {runs} with no worker",
                )
            except AssertionError:
                print(seen[-5:], (tmp_path / "scheduler.log").read_text()[-3000:])
                raise
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
