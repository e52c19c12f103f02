"""Running jobsched's services in one asyncio loop until SIGTERM or SIGINT.

The first signal asks every service to stop gracefully; a second one stops at
once (runs still held are rescued later by their lease expiring).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Protocol

from jobsched.cli.migrating import migrate_database
from jobsched.config.settings import Settings
from jobsched.core.errors import ConfigurationError
from jobsched.core.network_policy import LOOPBACK_NETWORKS
from jobsched.monitoring.metrics import export_build_info
from jobsched.monitoring.server import ReadinessCheck, ops_endpoint
from jobsched.queue import DatabaseQueue, RunQueue, create_queue
from jobsched.scheduler.notifier import Notifier, subscriptions
from jobsched.scheduler.service import Scheduler
from jobsched.storage.base import Storage
from jobsched.storage.database import SQLStorage
from jobsched.storage.leadership import leadership_for
from jobsched.storage.notifications import JOBS_CHANNEL, RUNS_CHANNEL, NotificationListener
from jobsched.storage.urls import parse_database_url
from jobsched.worker.handlers.http_network import guarded_client
from jobsched.worker.registry import default_registry, import_handler_modules
from jobsched.worker.service import Worker

logger = logging.getLogger("jobsched")


class Service(Protocol):
    async def run(self) -> None: ...

    def request_stop(self) -> None: ...


async def run_until_signalled(services: list[Service]) -> None:
    loop = asyncio.get_running_loop()
    tasks = [asyncio.create_task(service.run()) for service in services]
    signals_seen = 0

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            logger.info("stopping (send the signal again to stop at once)")
            for service in services:
                service.request_stop()
        else:
            for task in tasks:
                task.cancel()

    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, on_signal)
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        # One service ending (or failing) ends the process: stop the others too.
        for service in services:
            service.request_stop()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signal_number)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
    del done


async def _open_backends(
    settings: Settings, stack: AsyncExitStack, *, check_schema: bool = True
) -> tuple[SQLStorage, RunQueue]:
    export_build_info()
    storage = SQLStorage.from_url(settings.database.url, pool_size=settings.database.pool_size)
    stack.push_async_callback(storage.close)
    # Dead runs (and other wanted events) are recorded for the notifier by whichever
    # process makes them so: workers' outcomes, the scheduler's rescue.
    storage.set_webhook_subscriptions(subscriptions(settings.notifications))
    if check_schema:
        await storage.check_schema()
    # A worker holds the deliveries of its executing runs and of up to as many more
    # whose outcomes are being written (Worker._capacity).
    queue = create_queue(settings.queue, storage, prefetch_count=2 * settings.worker.concurrency)
    stack.push_async_callback(queue.close)
    return storage, queue


def _listen(
    settings: Settings, stack: AsyncExitStack, channel: str, callback: Callable[[str], None]
) -> None:
    """Call ``callback(payload)`` on each PostgreSQL NOTIFY on ``channel``; SQLite has none."""
    database = parse_database_url(settings.database.url)
    if database.dialect != "postgresql":
        return
    listener = NotificationListener(
        database, [channel], lambda _channel, payload: callback(payload)
    )
    listener.start()
    stack.push_async_callback(listener.close)


def _scheduler(
    settings: Settings, storage: Storage, queue: RunQueue, stack: AsyncExitStack
) -> Scheduler:
    scheduler = Scheduler(
        storage,
        queue,
        settings.scheduler,
        retention=settings.retention,
        leadership=leadership_for(parse_database_url(settings.database.url)),
    )
    _listen(settings, stack, JOBS_CHANNEL, scheduler.on_jobs_changed)
    return scheduler


def _notifiers(settings: Settings, storage: SQLStorage, stack: AsyncExitStack) -> list[Service]:
    """The notifier, when ``notifications.endpoints`` names any (sent through the guard)."""
    if not settings.notifications.endpoints:
        return []
    client = guarded_client(settings.notifications.network_policy())
    stack.push_async_callback(client.aclose)
    return [Notifier(storage, settings.notifications, client)]


def _worker(settings: Settings, storage: Storage, queue: RunQueue, stack: AsyncExitStack) -> Worker:
    if isinstance(queue, DatabaseQueue):
        _listen(settings, stack, RUNS_CHANNEL, queue.on_runs_ready)
    import_handler_modules(settings.worker.imports)
    return Worker(
        storage,
        queue,
        default_registry,
        settings.worker,
        default_timeout_seconds=settings.jobs.timeout_seconds,
        poll_interval_seconds=settings.queue.poll_interval_seconds,
    )


async def serve_api(settings: Settings) -> None:
    from jobsched.cli.http_service import api_server  # noqa: PLC0415 - see http_service

    check_listen_address(settings.api.host, settings.api.port)
    async with AsyncExitStack() as stack:
        storage, queue = await _open_backends(settings, stack)
        await run_until_signalled([api_server(settings, storage, queue, stack)])


def readiness_checks(storage: Storage, queue: RunQueue) -> list[ReadinessCheck]:
    """What ``/readyz`` checks: the database, and the broker when it is not the database."""
    checks: list[ReadinessCheck] = [("storage", storage.ping)]
    if not isinstance(queue, DatabaseQueue):
        checks.append(("broker", queue.ping))
    return checks


async def serve_scheduler(settings: Settings) -> None:
    async with AsyncExitStack() as stack:
        storage, queue = await _open_backends(settings, stack)
        checks = readiness_checks(storage, queue)
        with ops_endpoint(settings.metrics.host, settings.metrics.port, checks):
            scheduler = _scheduler(settings, storage, queue, stack)
            await run_until_signalled([scheduler, *_notifiers(settings, storage, stack)])


async def serve_worker(settings: Settings) -> None:
    async with AsyncExitStack() as stack:
        storage, queue = await _open_backends(settings, stack)
        worker = _worker(settings, storage, queue, stack)
        checks = readiness_checks(storage, queue)
        with ops_endpoint(settings.metrics.host, settings.metrics.port, checks):
            await run_until_signalled([worker])


def check_listen_address(host: str, port: int) -> None:
    """``ConfigurationError`` naming ``api.host`` or ``api.port`` if the API could not listen."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise ConfigurationError(
            f"api.host {host!r} (--host, JOBSCHED_API_HOST): not an address of this host "
            f"({getattr(error, 'strerror', None) or error})"
        ) from error
    family, kind, protocol, _, address = addresses[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise ConfigurationError(
                f"api.port {port} (--port, JOBSCHED_API_PORT): cannot listen on {host}:{port} "
                f"({error.strerror}); choose a free port"
            ) from error


def standalone_settings(settings: Settings) -> Settings:
    """``settings`` with loopback admitted for http jobs, unless they say what is admitted.

    A standalone process is a laptop's or a demo's, calling hooks on the same machine
    (the README's first example does); ``api`` and ``worker`` admit nothing private
    unless ``worker.http.allowed_networks`` says so.
    """
    http = settings.worker.http
    if http.allowed_networks is not None:
        return settings
    http = http.model_copy(update={"allowed_networks": list(LOOPBACK_NETWORKS)})
    worker = settings.worker.model_copy(update={"http": http})
    return settings.model_copy(update={"worker": worker})


async def serve_standalone(settings: Settings) -> None:
    """API, scheduler and worker in one process; the schema is migrated first."""
    from jobsched.cli.http_service import api_server  # noqa: PLC0415 - see http_service

    # Before the database is touched: a taken port or a bad host is one line, at once.
    check_listen_address(settings.api.host, settings.api.port)
    if settings.worker.http.allowed_networks is None:
        logger.info(
            "standalone: http jobs may call loopback addresses (%s), which api and worker "
            "processes refuse; set worker.http.allowed_networks to choose what is admitted",
            ", ".join(LOOPBACK_NETWORKS),
        )
    settings = standalone_settings(settings)
    migrate_database(settings.database.url)
    async with AsyncExitStack() as stack:
        storage, queue = await _open_backends(settings, stack)
        worker = _worker(settings, storage, queue, stack)
        scheduler = _scheduler(settings, storage, queue, stack)
        api = api_server(settings, storage, queue, stack, on_jobs_changed=scheduler.wake)
        logger.info(
            "jobsched standalone on http://%s:%d (database %s)",
            settings.api.host,
            settings.api.port,
            parse_database_url(settings.database.url).sync_url.render_as_string(hide_password=True),
        )
        notifiers = _notifiers(settings, storage, stack)
        await run_until_signalled([scheduler, worker, api, *notifiers])
