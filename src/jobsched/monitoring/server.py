"""The operations endpoint of processes that have no HTTP API (scheduler, worker).

It serves, on ``metrics.host:metrics.port``:

- ``/metrics``: the process's Prometheus metrics;
- ``/healthz``: 200 while the service's event loop runs a no-op within
  ``HEALTH_TIMEOUT_SECONDS`` (a wedged loop answers 503, so a liveness probe
  restarts the process);
- ``/readyz``: 200 when every readiness check (the database, the broker) passes
  on the event loop within the timeout, else 503 ``application/problem+json``
  naming the checks that failed;
- anything else: 404 (405 for a method other than GET and HEAD).

The server runs in a thread of its own, so it answers even while the loop is busy;
the checks run on the loop, which is what makes ``/healthz`` mean "alive".
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from jobsched.core.errors import ConfigurationError

logger = logging.getLogger("jobsched.monitoring")

ReadinessCheck = tuple[str, Callable[[], Awaitable[object]]]
HEALTH_TIMEOUT_SECONDS = 5.0
PROBLEM_TYPE_BASE = "https://jobsched.dev/problems/"
_ALLOWED_METHODS = "GET, HEAD"


class _OpsServer(ThreadingHTTPServer):
    daemon_threads = True
    loop: asyncio.AbstractEventLoop
    readiness_checks: Sequence[ReadinessCheck]


class _OpsServer6(_OpsServer):
    address_family = socket.AF_INET6


def _on_loop(server: _OpsServer, check: Callable[[], Awaitable[object]]) -> None:
    """Run ``check`` on the service's loop; raise if it fails or takes too long."""

    async def call() -> None:
        await check()

    future = asyncio.run_coroutine_threadsafe(call(), server.loop)
    try:
        future.result(timeout=HEALTH_TIMEOUT_SECONDS)
    except FutureTimeout:
        future.cancel()
        raise TimeoutError(f"no answer within {HEALTH_TIMEOUT_SECONDS:g}s") from None


async def _loop_answers() -> None:
    """Nothing: that the loop ran it is the check."""


class _OpsHandler(BaseHTTPRequestHandler):
    server: _OpsServer
    server_version = "jobsched"
    sys_version = ""

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(HTTPStatus.OK, content_type, encoder(REGISTRY))
        elif path == "/healthz":
            self._health([("event_loop", _loop_answers)])
        elif path == "/readyz":
            self._health(self.server.readiness_checks)
        else:
            self._problem(HTTPStatus.NOT_FOUND, "not-found", "Not found", f"no such path: {path}")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _not_allowed(self) -> None:
        self._problem(
            HTTPStatus.METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            f"{self.command} is not allowed here; use GET or HEAD",
            headers={"Allow": _ALLOWED_METHODS},
        )

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _not_allowed  # noqa: N815 - the base's names

    def _health(self, checks: Sequence[ReadinessCheck]) -> None:
        failed: list[dict[str, str]] = []
        for name, check in checks:
            try:
                _on_loop(self.server, check)
            except Exception as error:  # any failure means "not ready"
                logger.warning("health check %s failed: %s", name, error or type(error).__name__)
                failed.append({"field": name, "message": "failed; see the server log"})
        if failed:
            names = ", ".join(item["field"] for item in failed)
            self._problem(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "not-ready",
                "The service is not ready",
                f"not ready: {names}",
                errors=failed,
            )
        else:
            self._send(HTTPStatus.OK, "application/json", b'{"status":"ok"}')

    def _problem(
        self,
        status: HTTPStatus,
        slug: str,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + slug,
            "title": title,
            "status": int(status),
            "detail": detail,
            "instance": self.path.partition("?")[0],
        }
        if errors:
            body["errors"] = errors
        payload = json.dumps(body).encode()
        self._send(status, "application/problem+json", payload, headers=headers)

    def _send(
        self,
        status: HTTPStatus,
        content_type: str,
        body: bytes,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Probes hit these paths every few seconds: no access log."""


@contextmanager
def ops_endpoint(
    host: str, port: int, readiness_checks: Sequence[ReadinessCheck] = ()
) -> Iterator[None]:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` while the block runs; port 0: none.

    Must be entered on the service's running event loop, which the checks run on.
    """
    if port == 0:
        yield
        return
    try:
        server_class = _OpsServer6 if ":" in host else _OpsServer
        server = server_class((host, port), _OpsHandler)
    except OSError as error:
        raise ConfigurationError(
            f"metrics.port {port}: cannot listen on {host}:{port} ({error.strerror}); "
            "set JOBSCHED_METRICS_PORT to a free port"
        ) from error
    server.loop = asyncio.get_running_loop()
    server.readiness_checks = tuple(readiness_checks)
    thread = threading.Thread(target=server.serve_forever, name="jobsched-ops", daemon=True)
    thread.start()
    logger.info("metrics and health on http://%s:%d/metrics, /healthz, /readyz", host, port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
