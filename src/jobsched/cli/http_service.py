"""The HTTP side of ``jobsched api`` and ``standalone``: the app, its job cache, uvicorn.

Kept apart from ``cli.services`` and imported only by the commands that serve
HTTP: FastAPI, Starlette, uvicorn and the API's models add about 18 MiB to a
process, which a worker or scheduler (often run many times over) does not need.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack

import uvicorn
from fastapi import FastAPI

from jobsched.api.app import create_app
from jobsched.api.auth import auth_enabled
from jobsched.api.cache import job_cache_from_settings
from jobsched.config.settings import Settings
from jobsched.queue import RunQueue
from jobsched.queue.database import DatabaseQueue
from jobsched.storage.base import Storage

logger = logging.getLogger("jobsched.api")


def api_server(
    settings: Settings,
    storage: Storage,
    queue: RunQueue,
    stack: AsyncExitStack,
    *,
    on_jobs_changed: Callable[[], None] | None = None,
) -> ApiServer:
    """The API on ``settings.api``, with its job cache closed by ``stack``."""
    cache = job_cache_from_settings(settings)
    stack.push_async_callback(cache.close)
    app = create_app(
        storage,
        queue,
        settings,
        readiness_checks=_broker_checks(queue),
        cache=cache,
        on_jobs_changed=on_jobs_changed,
    )
    log_auth_state(settings)
    return ApiServer(app, settings.api.host, settings.api.port)


def _broker_checks(queue: RunQueue) -> list[Callable[[], Awaitable[None]]]:
    """``/readyz`` pings the broker too, unless the database is the queue."""
    if isinstance(queue, DatabaseQueue):
        return []

    async def broker() -> None:
        await queue.ping()

    return [broker]


def log_auth_state(settings: Settings) -> None:
    """Say at every start whether the API asks for tokens, and why."""
    auth, host = settings.api.auth, settings.api.host
    if auth_enabled(auth, host):
        reason = "api.auth.enabled" if auth.enabled else f"{host} is not a loopback address"
        logger.info(
            "API auth on (%s): every request needs a token but /healthz, /readyz "
            "and the dashboard's sign-in page and static files",
            reason,
        )
    elif auth.enabled is None:
        logger.info(
            "API auth off: listening on %s (loopback) only; set api.auth.enabled=true to "
            "require tokens here too",
            host,
        )
    else:
        logger.warning(
            "API auth is OFF on %s (api.auth.enabled=false): anyone who can reach this "
            "address can change and delete every job",
            host,
        )


class ApiServer:
    """uvicorn serving the API, with signals left to ``run_until_signalled``."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
        self._server = _QuietSignalServer(config)

    async def run(self) -> None:
        await self._server.serve()
        if not self._server.started:
            raise SystemExit(1)

    def request_stop(self) -> None:
        self._server.should_exit = True


class _QuietSignalServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The process's signal handling belongs to run_until_signalled, which stops
        # every service, not only the HTTP server.
        yield
