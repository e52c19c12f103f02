"""The ``/metrics`` endpoint of processes that have no HTTP API (scheduler, worker)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import start_http_server

from jobsched.core.errors import ConfigurationError

logger = logging.getLogger("jobsched.monitoring")


@contextmanager
def metrics_endpoint(host: str, port: int) -> Iterator[None]:
    """Serve Prometheus metrics on ``host:port`` while the block runs; port 0 serves none."""
    if port == 0:
        yield
        return
    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as error:
        raise ConfigurationError(
            f"metrics.port {port}: cannot listen on {host}:{port} ({error.strerror}); "
            "set JOBSCHED_METRICS_PORT to a free port"
        ) from error
    logger.info("metrics on http://%s:%d/metrics", host, port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
