"""Fixtures of the worker tests: workers on the database queue of the test's own database."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import sqlalchemy as sa

from jobsched.config.settings import WorkerSettings
from jobsched.core.models import RetryPolicy
from jobsched.queue.database import DatabaseQueue
from jobsched.storage.base import Storage
from jobsched.storage.database import SQLStorage
from jobsched.storage.urls import parse_database_url
from jobsched.worker.registry import HandlerRegistry
from jobsched.worker.service import Worker

# Short delays and no jitter keep retry tests fast and their timing predictable.
FAST_RETRY = RetryPolicy(
    max_attempts=3,
    backoff="exponential",
    initial_delay_seconds=0.05,
    max_delay_seconds=1.0,
    jitter=False,
)

_TEST_WORKER_SETTINGS: dict[str, Any] = {
    "concurrency": 4,
    "lease_seconds": 30.0,
    "heartbeat_interval_seconds": 0.2,
    "shutdown_grace_seconds": 5.0,
}


def process_gone(pid: int) -> bool:
    """Whether process ``pid`` has ended: absent, or a zombie no one reaped yet.

    A killed process whose parent died with it is reparented to PID 1, which in some
    containers never reaps it; it is dead all the same.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    if not Path("/proc").is_dir():  # not Linux: no way to tell a zombie apart
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone meanwhile
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


class StartWorker(Protocol):
    def __call__(
        self,
        registry: HandlerRegistry,
        *,
        storage: Storage | None = None,
        default_timeout_seconds: float | None = None,
        **settings: Any,
    ) -> Awaitable[Worker]: ...


@pytest.fixture
async def start_worker(storage: SQLStorage) -> AsyncIterator[StartWorker]:
    """Start workers in tasks; each is stopped (and its errors raised) at teardown."""
    running: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(
        registry: HandlerRegistry,
        *,
        storage: Storage | None = None,
        default_timeout_seconds: float | None = None,
        **settings: Any,
    ) -> Worker:
        store: Storage = storage or default_storage
        worker_settings = WorkerSettings(
            **{"id": f"worker-{uuid.uuid4().hex[:8]}", **_TEST_WORKER_SETTINGS, **settings}
        )
        worker = Worker(
            store,
            DatabaseQueue(store),
            registry,
            worker_settings,
            default_timeout_seconds=default_timeout_seconds,
            poll_interval_seconds=0.05,
        )
        running.append((worker, asyncio.create_task(worker.run())))
        return worker

    default_storage = storage
    yield start
    for worker, task in running:
        await asyncio.wait_for(worker.stop(), timeout=30)
        await task


@pytest.fixture
def sql(database_url: str) -> Iterator[sa.Engine]:
    """A plain synchronous engine on the same database as ``storage``, to meddle as others would."""
    engine = sa.create_engine(parse_database_url(database_url).sync_url)
    yield engine
    engine.dispose()
