"""Cancelling runs through storage (as the API does) while a real worker holds them.

A running run drops out of the worker's next lease renewal; the worker must then
stop its handler for real (an async handler cancelled, a thread told through
``context.cancelled``, a process-isolated handler's child killed) and write no
outcome: the run stays ``cancelled``, its attempt ``cancelled``, never retried.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from pathlib import Path

from jobsched.core.models import AttemptStatus, JsonObject, Run, RunStatus
from jobsched.storage.base import Storage
from jobsched.storage.database import SQLStorage
from jobsched.worker.context import RunContext
from jobsched.worker.registry import HandlerRegistry
from tests.helpers import create_due_run, wait_until
from tests.integration.worker import process_handlers
from tests.integration.worker.conftest import (
    EndlessHandler,
    StartWorker,
    job_spec,
    metric_value,
    process_gone,
    succeeded_run,
)


def cancelled_count(job_type: str) -> float:
    return metric_value("jobs_cancelled_total", type=job_type, queue="default")


async def assert_cancelled_not_retried(storage: Storage, run: Run) -> None:
    current = await storage.get_run(run.id)
    assert (current.status, current.attempt, current.lease_owner) == (
        RunStatus.CANCELLED,
        1,
        None,
    )
    assert current.finished_at is not None
    (attempt,) = await storage.list_attempts(run.id)
    assert attempt.status is AttemptStatus.CANCELLED


async def test_queued_run_cancelled_before_a_worker_sees_it_never_runs(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    called: list[str] = []

    @registry.handler("recorded")
    async def recorded(payload: JsonObject, context: RunContext) -> None:
        called.append(payload["name"])

    cancelled = await create_due_run(storage, job_spec("recorded", payload={"name": "cancelled"}))
    await storage.cancel_run(cancelled.id)
    # Created after the cancelled one: once it has run, the worker has seen both.
    later = await create_due_run(storage, job_spec("recorded", payload={"name": "later"}))
    await start_worker(registry)

    await wait_until(lambda: succeeded_run(storage, later.id))
    assert called == ["later"]
    current = await storage.get_run(cancelled.id)
    assert (current.status, current.attempt) == (RunStatus.CANCELLED, 0)
    assert await storage.list_attempts(cancelled.id) == []


async def test_running_async_handler_is_cancelled(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    handler = EndlessHandler()
    registry = HandlerRegistry()
    registry.register("cancel_async", handler)
    before = cancelled_count("cancel_async")
    run = await create_due_run(storage, job_spec("cancel_async"))
    worker = await start_worker(registry)
    await wait_until(handler.entered.is_set)

    await storage.cancel_run(run.id)

    await wait_until(lambda: handler.cancellations_seen == [True], timeout_seconds=5)
    await wait_until(lambda: worker.in_flight_count == 0)
    await assert_cancelled_not_retried(storage, run)
    assert cancelled_count("cancel_async") == before + 1


async def test_running_thread_handler_is_told_through_its_flag(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    entered = threading.Event()
    flag_seen: list[float] = []

    @registry.handler("cancel_thread")
    def cancel_thread(payload: JsonObject, context: RunContext) -> None:
        entered.set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if context.cancelled.wait(timeout=0.01):
                flag_seen.append(time.monotonic())
                return
        raise AssertionError("the cancellation flag never came")

    before = cancelled_count("cancel_thread")
    run = await create_due_run(storage, job_spec("cancel_thread"))
    worker = await start_worker(registry)
    await wait_until(entered.is_set)

    cancelled_at = time.monotonic()
    await storage.cancel_run(run.id)

    await wait_until(lambda: len(flag_seen) == 1, timeout_seconds=5)
    assert flag_seen[0] - cancelled_at < 2  # a heartbeat or two, not the lease
    await wait_until(lambda: worker.in_flight_count == 0)
    await assert_cancelled_not_retried(storage, run)
    assert cancelled_count("cancel_thread") == before + 1


async def test_running_process_handler_has_its_child_killed(
    storage: SQLStorage, start_worker: StartWorker, tmp_path: Path
) -> None:
    registry = HandlerRegistry()
    registry.register("cancel_process", process_handlers.write_pid_then_sleep, isolation="process")
    pid_file = tmp_path / f"{uuid.uuid4().hex}.pid"
    before = cancelled_count("cancel_process")
    run = await create_due_run(
        storage,
        job_spec("cancel_process", payload={"pid_file": str(pid_file), "sleep_seconds": 60}),
    )
    worker = await start_worker(registry)
    await wait_until(pid_file.exists, timeout_seconds=20)
    pid = int(await wait_until(pid_file.read_text))
    assert pid != os.getpid()
    assert not process_gone(pid)

    await storage.cancel_run(run.id)

    await wait_until(lambda: process_gone(pid), timeout_seconds=5)
    await wait_until(lambda: worker.in_flight_count == 0)
    await assert_cancelled_not_retried(storage, run)
    assert cancelled_count("cancel_process") == before + 1


async def test_worker_takes_the_next_run_once_a_cancelled_one_stopped(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    """The cancelled run's slot is freed: with concurrency 1 the next run gets it."""
    registry = HandlerRegistry()
    started: list[str] = []

    @registry.handler("slot")
    async def slot(payload: JsonObject, context: RunContext) -> None:
        started.append(payload["name"])
        if payload["name"] == "first":
            await asyncio.sleep(60)

    first = await create_due_run(storage, job_spec("slot", payload={"name": "first"}, priority=1))
    second = await create_due_run(storage, job_spec("slot", payload={"name": "second"}))
    await start_worker(registry, concurrency=1)
    await wait_until(lambda: started == ["first"])

    await storage.cancel_run(first.id)

    await wait_until(lambda: succeeded_run(storage, second.id), timeout_seconds=5)
    assert started == ["first", "second"]
    await assert_cancelled_not_retried(storage, first)
