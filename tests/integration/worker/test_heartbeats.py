"""Heartbeats: on time whatever the handlers do, and the worker registry they keep up to date."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from jobsched.core.errors import StorageError
from jobsched.core.models import JsonObject, RunStatus
from jobsched.storage.base import WorkerInfo, WorkerRecord
from jobsched.storage.database import SQLStorage
from jobsched.worker.context import RunContext
from jobsched.worker.registry import HandlerRegistry
from tests.helpers import create_due_run, wait_until
from tests.integration.worker.conftest import (
    HeldHandler,
    PassThroughStorage,
    StartWorker,
    job_spec,
    metric_value,
    succeeded_run,
)

HEARTBEAT_INTERVAL_SECONDS = 0.5
SPIN_SECONDS = 4.0
SPINNING_HANDLERS = 4


class RecordedRenewals(PassThroughStorage):
    """Real storage that notes when each lease renewal was asked for (monotonic time)."""

    def __init__(self, inner: SQLStorage) -> None:
        super().__init__(inner)
        self.renewal_times: list[float] = []

    async def renew_leases(
        self,
        worker_id: str,
        held: Sequence[tuple[uuid.UUID, int]],
        lease_seconds: float,
        *,
        progress: Mapping[tuple[uuid.UUID, int], JsonObject] | None = None,
    ) -> set[uuid.UUID]:
        self.renewal_times.append(time.monotonic())
        return await self._inner.renew_leases(worker_id, held, lease_seconds, progress=progress)


async def test_cpu_bound_thread_handlers_do_not_delay_heartbeats(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    """Four threads spinning pure-Python loops (GIL-bound) while the loop renews leases.

    The worker's event loop shares the GIL with them and waits for it at every I/O
    step of a renewal. At CPython's default switch interval (5 ms) a renewal then
    took 0.5-1.3 s on SQLite (beats were skipped, gaps reached 2 s) and up to 1 s on
    PostgreSQL; the worker's ``gil_switch_interval_seconds`` (1 ms) keeps every beat
    on its cadence with renewals of 0.02-0.2 s.
    """
    registry = HandlerRegistry()
    lock = threading.Lock()
    spinning: set[uuid.UUID] = set()
    load: list[tuple[float, float]] = []  # (start, end) of the time all four spun at once

    @registry.handler("spin")
    def spin(payload: JsonObject, context: RunContext) -> JsonObject:
        with lock:
            spinning.add(context.run_id)
            if len(spinning) == SPINNING_HANDLERS:
                load.append((time.monotonic(), time.monotonic() + SPIN_SECONDS))
        deadline = time.monotonic() + SPIN_SECONDS
        total = 0
        while time.monotonic() < deadline:
            for number in range(10_000):  # no I/O, no sleep: only the GIL's own switching
                total += number * number
        return {"total": total}

    recorded = RecordedRenewals(storage)
    fired = [await create_due_run(storage, job_spec("spin")) for _ in range(SPINNING_HANDLERS)]
    await start_worker(
        registry,
        storage=recorded,
        concurrency=SPINNING_HANDLERS,
        heartbeat_interval_seconds=HEARTBEAT_INTERVAL_SECONDS,
    )

    async def all_succeeded() -> bool:
        statuses = [(await storage.get_run(run.id)).status for run in fired]
        return statuses == [RunStatus.SUCCEEDED] * SPINNING_HANDLERS

    await wait_until(all_succeeded, timeout_seconds=SPIN_SECONDS * 4)
    assert len(load) == 1, "the four handlers never spun at the same time"
    load_start, load_end = load[0]
    during_load = [moment for moment in recorded.renewal_times if load_start <= moment <= load_end]
    assert len(during_load) >= SPIN_SECONDS / HEARTBEAT_INTERVAL_SECONDS - 2
    gaps = [later - earlier for earlier, later in itertools.pairwise(during_load)]
    assert max(gaps) < HEARTBEAT_INTERVAL_SECONDS + 1.0, f"heartbeat gaps under load: {gaps}"


# --- the worker registry ---------------------------------------------------------------


async def registered(storage: SQLStorage, worker_id: str) -> WorkerRecord | None:
    return next((w for w in await storage.list_workers() if w.info.id == worker_id), None)


async def test_worker_registers_heartbeats_and_deregisters(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    handler = HeldHandler()
    registry = HandlerRegistry()
    registry.register("registered", handler)
    ok_before = metric_value("worker_heartbeats_total", outcome="ok")
    worker = await start_worker(registry, concurrency=3, queues=["default", "reports"])
    record = await wait_until(lambda: registered(storage, worker.worker_id))
    assert record.info == WorkerInfo(
        id=worker.worker_id,
        host=socket.gethostname(),
        pid=os.getpid(),
        queues=["default", "reports"],
        handler_types=["http", "noop", "registered"],
        concurrency=3,
    )
    assert record.stopped_at is None
    first_heartbeat = record.heartbeat_at

    await create_due_run(storage, job_spec("registered"))
    await wait_until(handler.entered.is_set)

    async def one_run_in_progress() -> bool:
        current = await registered(storage, worker.worker_id)
        return current is not None and current.runs_in_progress == 1

    await wait_until(one_run_in_progress)
    current = await registered(storage, worker.worker_id)
    assert current is not None
    assert current.heartbeat_at > first_heartbeat
    assert metric_value("worker_heartbeats_total", outcome="ok") > ok_before
    last_beat = metric_value("worker_last_heartbeat_timestamp_seconds")
    assert abs(last_beat - time.time()) < 5

    handler.release.set()
    await wait_until(lambda: worker.in_flight_count == 0)
    await asyncio.wait_for(worker.stop(), timeout=10)
    stopped = await registered(storage, worker.worker_id)
    assert stopped is not None
    assert stopped.stopped_at is not None
    assert stopped.runs_in_progress == 0


class RegistryDown(PassThroughStorage):
    """Real storage whose worker-registry calls fail until ``down`` is cleared."""

    def __init__(self, inner: SQLStorage) -> None:
        super().__init__(inner)
        self.down = True
        self.failed_calls = 0

    def _fail_while_down(self) -> None:
        if self.down:
            self.failed_calls += 1
            raise StorageError("database unavailable: workers table locked")

    async def register_worker(self, info: WorkerInfo) -> WorkerRecord:
        self._fail_while_down()
        return await self._inner.register_worker(info)

    async def worker_heartbeat(self, worker_id: str, runs_in_progress: int) -> bool:
        self._fail_while_down()
        return await self._inner.worker_heartbeat(worker_id, runs_in_progress)


async def test_registry_failures_do_not_stop_the_work(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()

    @registry.handler("unregistered")
    async def unregistered(payload: JsonObject, context: RunContext) -> JsonObject:
        return {"ran": True}

    registry_down = RegistryDown(storage)
    run = await create_due_run(storage, job_spec("unregistered"))
    worker = await start_worker(registry, storage=registry_down)

    await wait_until(lambda: succeeded_run(storage, run.id))
    await wait_until(lambda: registry_down.failed_calls >= 2)  # the start, then a heartbeat
    assert await registered(storage, worker.worker_id) is None
    registry_down.down = False
    await wait_until(lambda: registered(storage, worker.worker_id))  # registered at a beat


async def test_a_pruned_worker_registers_again(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    worker = await start_worker(HandlerRegistry())
    first = await wait_until(lambda: registered(storage, worker.worker_id))
    # As the housekeeping would after a long silence (a paused VM, say).
    assert await storage.prune_workers(first.heartbeat_at + timedelta(days=1)) == 1

    again: WorkerRecord = await wait_until(lambda: registered(storage, worker.worker_id))
    assert again.started_at >= first.started_at
    assert isinstance(again.heartbeat_at, datetime)
