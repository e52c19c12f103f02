"""Fixtures and helpers of the worker tests: workers on the database queue of the test's database.

Besides the workers: the jobs they run, handlers a test holds in place while it acts,
and real storage with a few methods overridden.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, Protocol

import httpcore
import pytest
from prometheus_client import REGISTRY

from jobsched.config.settings import WorkerSettings
from jobsched.core.models import JobSpec, JsonObject, RetryPolicy, Run, RunStatus
from jobsched.queue.database import DatabaseQueue
from jobsched.storage.base import Storage
from jobsched.storage.database import SQLStorage
from jobsched.worker.context import RunContext
from jobsched.worker.handlers.http_network import Resolver, system_resolver
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


def job_spec(job_type: str, **fields: Any) -> JobSpec:
    """A job of ``job_type``, with an empty payload and ``FAST_RETRY`` unless ``fields`` differ."""
    fields.setdefault("payload", {})
    fields.setdefault("retry", FAST_RETRY)
    return JobSpec(type=job_type, **fields)


async def final_run(storage: Storage, run_id: uuid.UUID) -> Run | None:
    """The run once it has ended for good (a ``wait_until`` predicate); None before."""
    run = await storage.get_run(run_id)
    return run if run.status.is_final else None


async def succeeded_run(storage: Storage, run_id: uuid.UUID) -> Run | None:
    """The run once it has succeeded (a ``wait_until`` predicate); None before."""
    run = await storage.get_run(run_id)
    return run if run.status is RunStatus.SUCCEEDED else None


def metric_value(name: str, **labels: str) -> float:
    """A sample of the process's Prometheus registry; 0 for a series not yet incremented.

    The registry lives as long as the test session, so tests compare before and after.
    """
    return REGISTRY.get_sample_value(name, labels) or 0.0


class EndlessHandler:
    """An async handler that runs until the worker cancels it.

    ``entered`` is set once a run is in it; ``cancellations_seen`` records, at each
    cancellation, whether the run's context said it was cancelled (the worker meant it,
    rather than anything else cancelling the task).
    """

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.cancellations_seen: list[bool] = []

    async def __call__(self, payload: JsonObject, context: RunContext) -> None:
        self.entered.set()
        try:
            await asyncio.sleep(60)  # far longer than any test lets it run
        except asyncio.CancelledError:
            self.cancellations_seen.append(context.is_cancelled())
            raise


class HeldHandler:
    """An async handler that, once a run is in it (``entered``), waits for ``release``.

    The test acts while the run is surely running, then lets it end with ``result``.
    """

    def __init__(self, result: JsonObject | None = None) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self._result = result

    async def __call__(self, payload: JsonObject, context: RunContext) -> JsonObject | None:
        self.entered.set()
        await self.release.wait()
        return self._result


class PassThroughStorage:
    """Real storage for a worker, except for the methods a subclass overrides.

    Every other attribute is the wrapped storage's, so the subclass states only what it
    changes (a renewal that fails, an outcome held back).
    """

    def __init__(self, inner: SQLStorage) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


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
        http_resolver: Resolver = system_resolver,
        http_connector: httpcore.AsyncNetworkBackend | None = None,
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
        http_resolver: Resolver = system_resolver,
        http_connector: httpcore.AsyncNetworkBackend | None = None,
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
            http_resolver=http_resolver,
            http_connector=http_connector,
        )
        running.append((worker, asyncio.create_task(worker.run())))
        return worker

    default_storage = storage
    yield start
    for worker, task in running:
        await asyncio.wait_for(worker.stop(), timeout=30)
        await task
