"""Graceful shutdown: runs that end within the grace are recorded, the rest handed back.

Handing back (``release_runs``) makes a run ready for another worker at once, its
attempt not counted; it happens only once the run's handler has really stopped, so
that no two workers execute the same run at the same time.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import uuid
from pathlib import Path

from jobsched.core.models import AttemptStatus, JsonObject, Run, RunStatus
from jobsched.storage.base import Storage
from jobsched.storage.database import SQLStorage
from jobsched.worker.context import RunContext
from jobsched.worker.execution import CANCEL_GRACE_SECONDS
from jobsched.worker.registry import HandlerRegistry
from tests.helpers import create_due_run, wait_until
from tests.integration.worker import process_handlers
from tests.integration.worker.conftest import (
    StartWorker,
    job_spec,
    metric_value,
    process_gone,
    succeeded_run,
)


def released_count(job_type: str) -> float:
    return metric_value("jobs_released_total", type=job_type, queue="default")


async def assert_handed_back(storage: Storage, run: Run) -> None:
    current = await storage.get_run(run.id)
    assert (current.status, current.attempt, current.lease_owner) == (RunStatus.QUEUED, 0, None)
    assert current.published_at is None  # the outbox publishes it again
    assert await storage.list_attempts(run.id) == []


async def test_short_runs_finish_in_the_grace_long_ones_go_to_the_next_worker(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    started: dict[uuid.UUID, str] = {}

    @registry.handler("mixed")
    async def mixed(payload: JsonObject, context: RunContext) -> JsonObject:
        started[context.run_id] = payload["length"]
        if payload["length"] == "long" and context.attempt == 1 and payload.get("first_worker"):
            await asyncio.sleep(60)
        await asyncio.sleep(0.3)
        return {"length": payload["length"]}

    short = [
        await create_due_run(storage, job_spec("mixed", payload={"length": "short"}))
        for _ in range(3)
    ]
    long = [
        await create_due_run(
            storage, job_spec("mixed", payload={"length": "long", "first_worker": True})
        )
        for _ in range(3)
    ]
    before = released_count("mixed")
    first = await start_worker(registry, concurrency=6, shutdown_grace_seconds=1.0)
    await wait_until(lambda: len(started) == 6)

    stopping_since = time.monotonic()
    await asyncio.wait_for(first.stop(), timeout=10)
    assert time.monotonic() - stopping_since < 1.0 + 2 * CANCEL_GRACE_SECONDS

    for run in short:
        done = await storage.get_run(run.id)
        assert (done.status, done.attempt) == (RunStatus.SUCCEEDED, 1)
    for run in long:
        await assert_handed_back(storage, run)
    assert released_count("mixed") == before + 3

    # The next worker (its handler ends at once) takes them up as first attempts.
    later = HandlerRegistry()

    @later.handler("mixed")
    async def mixed_again(payload: JsonObject, context: RunContext) -> JsonObject:
        return {"attempt": context.attempt}

    second = await start_worker(later)
    for run in long:
        done = await wait_until(functools.partial(succeeded_run, storage, run.id))
        assert (done.attempt, done.result) == (1, {"attempt": 1})
        (attempt,) = await storage.list_attempts(run.id)
        assert (attempt.attempt, attempt.worker_id) == (1, second.worker_id)


async def test_stopping_kills_a_process_handlers_child_and_hands_its_run_back(
    storage: SQLStorage, start_worker: StartWorker, tmp_path: Path
) -> None:
    registry = HandlerRegistry()
    registry.register("isolated", process_handlers.write_pid_then_sleep, isolation="process")
    pid_file = tmp_path / "child.pid"
    run = await create_due_run(
        storage, job_spec("isolated", payload={"pid_file": str(pid_file), "sleep_seconds": 60})
    )
    worker = await start_worker(registry, shutdown_grace_seconds=0.2)
    pid = int(await wait_until(lambda: pid_file.exists() and pid_file.read_text(), 20))

    await asyncio.wait_for(worker.stop(), timeout=10)

    assert process_gone(pid), f"the handler's child process {pid} outlived the worker"
    await assert_handed_back(storage, run)


async def test_thread_handler_honouring_the_flag_is_handed_back(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    entered = threading.Event()

    @registry.handler("polite")
    def polite(payload: JsonObject, context: RunContext) -> None:
        entered.set()
        context.cancelled.wait(timeout=20)

    run = await create_due_run(storage, job_spec("polite"))
    worker = await start_worker(registry, shutdown_grace_seconds=0.2)
    await wait_until(entered.is_set)

    await asyncio.wait_for(worker.stop(), timeout=10)

    await assert_handed_back(storage, run)


async def test_thread_handler_ignoring_the_flag_is_left_to_its_lease(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    """A thread that cannot be stopped keeps its run: handing it back would run it twice."""
    registry = HandlerRegistry()
    entered = threading.Event()
    release = threading.Event()

    @registry.handler("stubborn")
    def stubborn(payload: JsonObject, context: RunContext) -> None:
        entered.set()
        release.wait(timeout=20)

    run = await create_due_run(storage, job_spec("stubborn"))
    worker = await start_worker(registry, shutdown_grace_seconds=0.2)
    await wait_until(entered.is_set)
    try:
        stopping_since = time.monotonic()
        await asyncio.wait_for(worker.stop(), timeout=10)
        assert time.monotonic() - stopping_since < 0.2 + 3 * CANCEL_GRACE_SECONDS
        current = await storage.get_run(run.id)
        assert (current.status, current.attempt) == (RunStatus.RUNNING, 1)
        assert current.lease_owner == worker.worker_id
        assert [a.status for a in await storage.list_attempts(run.id)] == [AttemptStatus.RUNNING]
    finally:
        release.set()
