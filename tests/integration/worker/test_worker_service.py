"""The worker against real storage (SQLite and PostgreSQL) and the database queue."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from jobsched.config.settings import WorkerSettings
from jobsched.core.errors import StorageError
from jobsched.core.models import AttemptStatus, JsonObject, Run, RunStatus
from jobsched.queue.database import DatabaseQueue
from jobsched.storage.base import AttemptOutcome
from jobsched.storage.database import SQLStorage
from jobsched.storage.schema import runs
from jobsched.worker.context import RunContext
from jobsched.worker.errors import NonRetryableError
from jobsched.worker.registry import HandlerRegistry
from jobsched.worker.service import Worker
from tests.helpers import create_due_run, wait_until
from tests.integration.worker.conftest import (
    FAST_RETRY,
    EndlessHandler,
    HeldHandler,
    PassThroughStorage,
    StartWorker,
    final_run,
    job_spec,
    metric_value,
)

# --- retries -----------------------------------------------------------------------


async def test_failing_twice_then_succeeding_ends_succeeded_on_attempt_3(
    storage: SQLStorage, start_worker: StartWorker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jobsched.worker")
    registry = HandlerRegistry()

    @registry.handler("flaky")
    async def flaky(payload: JsonObject, context: RunContext) -> JsonObject:
        if context.attempt < 3:
            raise RuntimeError(f"boom {context.attempt}")
        return {"ok": True, "attempt": context.attempt, "echo": payload}

    retry = replace(FAST_RETRY, initial_delay_seconds=0.2)
    run = await create_due_run(storage, job_spec("flaky", payload={"n": 1}, retry=retry))
    await start_worker(registry)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert done.status is RunStatus.SUCCEEDED
    assert done.attempt == 3
    assert done.result == {"ok": True, "attempt": 3, "echo": {"n": 1}}
    attempts = await storage.list_attempts(run.id)
    assert [a.status for a in attempts] == [
        AttemptStatus.FAILED,
        AttemptStatus.FAILED,
        AttemptStatus.SUCCEEDED,
    ]
    assert [a.error for a in attempts] == ["RuntimeError: boom 1", "RuntimeError: boom 2", None]
    assert attempts[2].result == done.result
    # Exponential backoff from 0.2s: the second try waits 0.2s, the third 0.4s (a little
    # slack for the moment between dating the retry and committing the attempt).
    for earlier, later, delay_seconds in (
        (attempts[0], attempts[1], 0.2),
        (attempts[1], attempts[2], 0.4),
    ):
        assert earlier.finished_at is not None
        assert later.started_at - earlier.finished_at >= timedelta(seconds=delay_seconds - 0.05)
    ends = [r.getMessage() for r in caplog.records if f"run {run.id} type=flaky" in r.getMessage()]
    assert len(ends) == 3
    assert "attempt=1 outcome=failed run=retrying" in ends[0]
    assert "attempt=3 outcome=succeeded run=succeeded" in ends[2]


async def test_always_failing_run_ends_dead_after_max_attempts(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()

    @registry.handler("broken")
    def broken(payload: JsonObject, context: RunContext) -> None:
        raise ValueError(f"bad attempt {context.attempt}")

    run = await create_due_run(
        storage, job_spec("broken", retry=replace(FAST_RETRY, max_attempts=4))
    )
    await start_worker(registry)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert done.status is RunStatus.DEAD
    assert done.attempt == 4
    assert done.last_error == "ValueError: bad attempt 4"
    assert done.finished_at is not None
    attempts = await storage.list_attempts(run.id)
    assert [a.status for a in attempts] == [AttemptStatus.FAILED] * 4
    assert [a.error for a in attempts] == [f"ValueError: bad attempt {n}" for n in range(1, 5)]


async def test_unknown_type_ends_dead_without_retry(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    run = await create_due_run(storage, job_spec("no_such_type"))
    await start_worker(HandlerRegistry())

    done = await wait_until(lambda: final_run(storage, run.id))
    assert done.status is RunStatus.DEAD
    assert done.attempt == 1
    assert done.last_error == "no handler registered for type 'no_such_type'"
    assert [a.status for a in await storage.list_attempts(run.id)] == [AttemptStatus.FAILED]


async def test_non_retryable_error_ends_dead_at_once(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    class RecipientUnknownError(NonRetryableError):
        pass

    registry = HandlerRegistry()

    @registry.handler("mail")
    async def mail(payload: JsonObject, context: RunContext) -> None:
        raise RecipientUnknownError("no such mailbox")

    run = await create_due_run(storage, job_spec("mail"))
    await start_worker(registry)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert (done.status, done.attempt) == (RunStatus.DEAD, 1)
    assert done.last_error == "RecipientUnknownError: no such mailbox"


async def test_result_that_cannot_be_stored_fails_the_attempt(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()

    @registry.handler("odd_result")
    async def odd_result(payload: JsonObject, context: RunContext) -> Any:
        return {"when": object()}

    run = await create_due_run(storage, job_spec("odd_result"))
    await start_worker(registry)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert (done.status, done.attempt) == (RunStatus.DEAD, 1)
    assert done.last_error is not None
    assert done.last_error.startswith("handler result is not JSON")


# --- timeouts and threads ----------------------------------------------------------


async def test_run_past_its_timeout_is_timed_out_and_retried(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    cancellations_seen: list[bool] = []

    @registry.handler("slow_once")
    async def slow_once(payload: JsonObject, context: RunContext) -> JsonObject:
        if context.attempt == 1:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancellations_seen.append(context.is_cancelled())
                raise
        return {"attempt": context.attempt}

    labels = {"type": "slow_once", "queue": "default"}
    timed_out_before = metric_value("jobs_timed_out_total", **labels)
    run = await create_due_run(storage, job_spec("slow_once", timeout_seconds=0.3))
    await start_worker(registry)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert (done.status, done.attempt, done.result) == (RunStatus.SUCCEEDED, 2, {"attempt": 2})
    first, second = await storage.list_attempts(run.id)
    assert (first.status, first.error) == (AttemptStatus.TIMED_OUT, "timed out after 0.3s")
    assert first.finished_at is not None
    assert timedelta(seconds=0.25) <= first.finished_at - first.started_at < timedelta(seconds=5)
    assert second.status is AttemptStatus.SUCCEEDED
    assert cancellations_seen == [True]
    assert metric_value("jobs_timed_out_total", **labels) == timed_out_before + 1


async def test_worker_default_timeout_applies_to_runs_without_one(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()

    @registry.handler("sleepy")
    async def sleepy(payload: JsonObject, context: RunContext) -> None:
        await asyncio.sleep(60)

    run = await create_due_run(
        storage, job_spec("sleepy", retry=replace(FAST_RETRY, max_attempts=2))
    )
    await start_worker(registry, default_timeout_seconds=0.2)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert (done.status, done.attempt) == (RunStatus.DEAD, 2)
    attempts = await storage.list_attempts(run.id)
    assert [a.status for a in attempts] == [AttemptStatus.TIMED_OUT] * 2
    assert done.last_error == "timed out after 0.2s"


async def test_sync_handler_runs_in_a_thread_without_blocking_the_loop(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    entered = threading.Event()
    release = threading.Event()

    @registry.handler("blocking")
    def blocking(payload: JsonObject, context: RunContext) -> JsonObject:
        entered.set()
        if not release.wait(timeout=20):
            raise RuntimeError("the test never released the handler")
        return {"thread": threading.current_thread().name}

    run = await create_due_run(storage, job_spec("blocking"))
    await start_worker(registry)
    try:
        # This polling runs on the event loop: it would stall if the handler blocked it.
        await wait_until(entered.is_set)
        running = await storage.get_run(run.id)
        assert running.status is RunStatus.RUNNING
    finally:
        release.set()

    done = await wait_until(lambda: final_run(storage, run.id))
    assert done.status is RunStatus.SUCCEEDED
    assert done.result is not None
    assert done.result["thread"].startswith("jobsched-handler")
    assert done.result["thread"] != threading.main_thread().name


async def test_sync_handler_past_its_timeout_is_recorded_at_the_deadline(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    release = threading.Event()
    cancelled_when_released: list[bool] = []

    @registry.handler("stuck")
    def stuck(payload: JsonObject, context: RunContext) -> None:
        release.wait(timeout=20)
        cancelled_when_released.append(context.is_cancelled())

    run = await create_due_run(
        storage, job_spec("stuck", timeout_seconds=0.3, retry=replace(FAST_RETRY, max_attempts=1))
    )
    await start_worker(registry)
    try:
        done = await wait_until(lambda: final_run(storage, run.id))
        # Recorded while the thread is still blocked: the deadline did not wait for it.
        assert cancelled_when_released == []
        assert (done.status, done.last_error) == (RunStatus.DEAD, "timed out after 0.3s")
        (attempt,) = await storage.list_attempts(run.id)
        assert attempt.status is AttemptStatus.TIMED_OUT
    finally:
        release.set()
    await wait_until(lambda: cancelled_when_released == [True])


# --- concurrency -------------------------------------------------------------------


async def test_no_more_runs_in_flight_than_concurrency(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    gate = asyncio.Event()
    active: set[uuid.UUID] = set()
    most_active = 0

    @registry.handler("gated")
    async def gated(payload: JsonObject, context: RunContext) -> None:
        nonlocal most_active
        active.add(context.run_id)
        most_active = max(most_active, len(active))
        await gate.wait()
        active.discard(context.run_id)

    fired = [await create_due_run(storage, job_spec("gated")) for _ in range(5)]
    await start_worker(registry, concurrency=2)

    await wait_until(lambda: len(active) == 2)
    statuses = [(await storage.get_run(run.id)).status for run in fired]
    assert statuses.count(RunStatus.RUNNING) == 2
    assert statuses.count(RunStatus.QUEUED) == 3
    gate.set()
    for run in fired:
        done = await wait_until(functools.partial(final_run, storage, run.id))
        assert done.status is RunStatus.SUCCEEDED
    assert most_active == 2


# --- leases ------------------------------------------------------------------------


async def test_outcome_after_a_takeover_is_refused(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    handler = HeldHandler(result={"by": "worker A"})
    registry = HandlerRegistry()
    registry.register("slow", handler)
    run = await create_due_run(storage, job_spec("slow"))
    # Worker A is told its renewals succeed while its one-second lease simply runs out
    # (as with a database whose clock jumped): it keeps the run, and only the storage
    # fence stands between its late outcome and the run.
    worker_a = await start_worker(
        registry,
        storage=RenewalsThatExtendNothing(storage),
        concurrency=1,
        lease_seconds=1.0,
        heartbeat_interval_seconds=0.2,
    )
    await wait_until(handler.entered.is_set)

    async def rescued() -> list[Run]:
        return (await storage.rescue_expired_leases(10)).requeued

    await wait_until(rescued, timeout_seconds=10)
    (taken,) = await storage.claim_ready_runs(["default"], 10, "worker-B", 30)
    assert (taken.id, taken.attempt) == (run.id, 2)

    refused_before = metric_value("worker_outcomes_refused_total")
    handler.release.set()
    await wait_until(lambda: metric_value("worker_outcomes_refused_total") == refused_before + 1)
    await wait_until(lambda: worker_a.in_flight_count == 0)

    current = await storage.get_run(run.id)
    assert (current.status, current.lease_owner, current.result) == (
        RunStatus.RUNNING,
        "worker-B",
        None,
    )
    # Storage refuses worker A's attempt whatever it claims, and accepts worker B's.
    stale = AttemptOutcome(
        run.id, 1, worker_a.worker_id, AttemptStatus.SUCCEEDED, RunStatus.SUCCEEDED
    )
    assert await storage.finish_attempts([stale]) == [False]
    fresh = AttemptOutcome(run.id, 2, "worker-B", AttemptStatus.SUCCEEDED, RunStatus.SUCCEEDED)
    assert await storage.finish_attempts([fresh]) == [True]
    attempts = await storage.list_attempts(run.id)
    assert [a.status for a in attempts] == [AttemptStatus.LOST, AttemptStatus.SUCCEEDED]


async def test_run_whose_lease_renewal_fails_is_abandoned(
    storage: SQLStorage, start_worker: StartWorker, sql: sa.Engine
) -> None:
    handler = EndlessHandler()
    registry = HandlerRegistry()
    registry.register("endless", handler)

    run = await create_due_run(storage, job_spec("endless"))
    worker = await start_worker(registry, heartbeat_interval_seconds=0.1)
    await wait_until(handler.entered.is_set)
    refused_before = metric_value("worker_outcomes_refused_total")

    with sql.begin() as connection:  # another party takes the lease over
        connection.execute(
            sa.update(runs).where(runs.c.id == run.id).values(lease_owner="intruder")
        )

    await wait_until(lambda: handler.cancellations_seen == [True])
    await wait_until(lambda: worker.in_flight_count == 0)
    assert metric_value("worker_outcomes_refused_total") == refused_before + 1
    current = await storage.get_run(run.id)
    assert (current.status, current.lease_owner) == (RunStatus.RUNNING, "intruder")
    assert [a.status for a in await storage.list_attempts(run.id)] == [AttemptStatus.RUNNING]


async def test_heartbeat_keeps_the_lease_of_a_long_run(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    handler = HeldHandler()
    registry = HandlerRegistry()
    registry.register("long", handler)

    run = await create_due_run(storage, job_spec("long"))
    await start_worker(registry, lease_seconds=1.0, heartbeat_interval_seconds=0.1)
    await wait_until(handler.entered.is_set)
    first_expiry = (await storage.get_run(run.id)).lease_expires_at
    assert first_expiry is not None

    async def lease_outlived_first_expiry() -> bool:
        expiry = (await storage.get_run(run.id)).lease_expires_at
        return expiry is not None and expiry > first_expiry + timedelta(seconds=1)

    await wait_until(lease_outlived_first_expiry)
    report = await storage.rescue_expired_leases(10)
    assert (report.requeued, report.dead) == ([], [])
    handler.release.set()
    done = await wait_until(lambda: final_run(storage, run.id))
    assert (done.status, done.attempt) == (RunStatus.SUCCEEDED, 1)


class RenewalsThatExtendNothing(PassThroughStorage):
    """Real storage whose lease renewals report every lease renewed but extend none."""

    async def renew_leases(
        self,
        worker_id: str,
        held: Sequence[tuple[uuid.UUID, int]],
        lease_seconds: float,
        *,
        progress: Mapping[tuple[uuid.UUID, int], JsonObject] | None = None,
    ) -> set[uuid.UUID]:
        return {run_id for run_id, _ in held}


# --- outages -----------------------------------------------------------------------


class FlakyStorage(PassThroughStorage):
    """Real storage whose named methods first raise the given errors, one per call."""

    def __init__(self, inner: SQLStorage, failures: dict[str, list[Exception]]) -> None:
        super().__init__(inner)
        self._failures = failures

    def _maybe_fail(self, method: str) -> None:
        pending = self._failures.get(method)
        if pending:
            raise pending.pop(0)

    async def claim_ready_runs(self, *args: Any, **kwargs: Any) -> list[Run]:
        self._maybe_fail("claim_ready_runs")
        return await self._inner.claim_ready_runs(*args, **kwargs)

    async def finish_attempts(self, *args: Any, **kwargs: Any) -> list[bool]:
        self._maybe_fail("finish_attempts")
        return await self._inner.finish_attempts(*args, **kwargs)


async def test_worker_rides_out_database_errors(
    storage: SQLStorage, start_worker: StartWorker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="jobsched.worker")
    outage = StorageError("database unavailable: connection refused")
    flaky = FlakyStorage(
        storage,
        {
            "claim_ready_runs": [outage, RuntimeError("driver bug"), outage],
            "finish_attempts": [outage, outage],
        },
    )
    registry = HandlerRegistry()
    calls: list[int] = []

    @registry.handler("steady")
    async def steady(payload: JsonObject, context: RunContext) -> JsonObject:
        calls.append(context.attempt)
        return {"fine": True}

    run = await create_due_run(storage, job_spec("steady"))
    await start_worker(registry, storage=flaky)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert (done.status, done.attempt, done.result) == (RunStatus.SUCCEEDED, 1, {"fine": True})
    assert calls == [1]  # the outcome was written late, not the handler run again
    messages = [record.getMessage() for record in caplog.records]
    assert sum("cannot claim runs" in message for message in messages) == 3
    assert sum("cannot record the outcome" in message for message in messages) == 2


class HeldOutcomes(PassThroughStorage):
    """Real storage whose ``finish_attempts`` waits until the test lets it go."""

    def __init__(self, inner: SQLStorage) -> None:
        super().__init__(inner)
        self.release = asyncio.Event()
        self.waiting = 0

    async def finish_attempts(self, outcomes: Sequence[AttemptOutcome]) -> list[bool]:
        self.waiting += len(outcomes)
        await self.release.wait()
        return await self._inner.finish_attempts(outcomes)


async def test_runs_writing_their_outcome_free_their_slot_up_to_concurrency_more(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    started: list[uuid.UUID] = []

    @registry.handler("quick")
    async def quick(payload: JsonObject, context: RunContext) -> None:
        started.append(context.run_id)

    held = HeldOutcomes(storage)
    created = [await create_due_run(storage, job_spec("quick")) for _ in range(4)]
    worker = await start_worker(registry, storage=held, concurrency=1)

    # Concurrency 1: the second run starts while the first's outcome is still being
    # written, and then no third: two runs wait for their outcomes at most.
    await wait_until(lambda: len(started) == 2)
    await asyncio.sleep(0.3)  # several claim polls: none may start a third run
    assert len(started) == 2
    assert worker.in_flight_count == 2

    held.release.set()
    for run in created:
        done = await wait_until(functools.partial(final_run, storage, run.id))
        assert done.status is RunStatus.SUCCEEDED
    assert sorted(started) == sorted(run.id for run in created)


# --- stopping ----------------------------------------------------------------------


async def test_stop_claims_no_more_and_waits_for_runs_in_flight(
    storage: SQLStorage, start_worker: StartWorker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jobsched.worker")
    handler = HeldHandler(result={"done": True})
    registry = HandlerRegistry()
    registry.register("finishing", handler)

    first = await create_due_run(storage, job_spec("finishing"))
    worker = await start_worker(registry, concurrency=1)
    await wait_until(handler.entered.is_set)
    second = await create_due_run(storage, job_spec("finishing"))  # waits: no capacity

    stopping = asyncio.create_task(worker.stop())
    await wait_until(lambda: any("waiting up to 5s for 1 runs" in m for m in caplog.messages))
    handler.release.set()  # only now, with the worker already in its grace period
    await asyncio.wait_for(stopping, timeout=10)

    assert (await storage.get_run(first.id)).status is RunStatus.SUCCEEDED
    assert (await storage.get_run(second.id)).status is RunStatus.QUEUED


async def test_stop_hands_back_runs_still_going_after_the_grace_period(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    handler = EndlessHandler()
    registry = HandlerRegistry()
    registry.register("endless", handler)

    run = await create_due_run(storage, job_spec("endless"))
    worker = await start_worker(registry, shutdown_grace_seconds=0.2)
    await wait_until(handler.entered.is_set)

    await asyncio.wait_for(worker.stop(), timeout=10)

    assert handler.cancellations_seen == [True]
    current = await storage.get_run(run.id)
    # Handed back: ready for another worker at once, the attempt not counted.
    assert (current.status, current.attempt, current.lease_owner) == (RunStatus.QUEUED, 0, None)
    assert await storage.list_attempts(run.id) == []


async def test_cancelled_worker_abandons_its_runs_to_lease_expiry(storage: SQLStorage) -> None:
    """A second signal (the worker's task cancelled) stops at once and hands nothing back."""
    handler = EndlessHandler()
    registry = HandlerRegistry()
    registry.register("endless", handler)

    run = await create_due_run(storage, job_spec("endless"))
    settings = WorkerSettings(
        id="worker-cancelled", heartbeat_interval_seconds=0.2, shutdown_grace_seconds=30
    )
    worker = Worker(
        storage, DatabaseQueue(storage), registry, settings, default_timeout_seconds=None
    )
    running = asyncio.create_task(worker.run())
    await wait_until(handler.entered.is_set)

    worker.request_stop()  # the first signal: a 30 s grace begins...
    running.cancel()  # ...and the second one ends it at once
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, timeout=5)

    assert handler.cancellations_seen == [True]
    current = await storage.get_run(run.id)
    assert (current.status, current.attempt) == (RunStatus.RUNNING, 1)
    assert current.lease_owner == "worker-cancelled"
    assert [a.status for a in await storage.list_attempts(run.id)] == [AttemptStatus.RUNNING]


# --- metrics -----------------------------------------------------------------------


async def test_metrics_count_attempts_and_their_ends(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()

    @registry.handler("metrics_ok")
    async def metrics_ok(payload: JsonObject, context: RunContext) -> None:
        return None

    @registry.handler("metrics_dead")
    async def metrics_dead(payload: JsonObject, context: RunContext) -> None:
        raise RuntimeError("always")

    ok = {"type": "metrics_ok", "queue": "default"}
    dead = {"type": "metrics_dead", "queue": "default"}
    names = [
        "jobs_started_total",
        "jobs_completed_total",
        "jobs_failed_total",
        "jobs_retried_total",
        "jobs_dead_total",
    ]
    before = {
        (name, labels["type"]): metric_value(name, **labels)
        for name in names
        for labels in (ok, dead)
    }
    ok_duration = {**ok, "outcome": "succeeded"}
    dead_duration = {**dead, "outcome": "failed"}
    durations_before = [
        metric_value("job_duration_seconds_count", **labels)
        for labels in (ok_duration, dead_duration)
    ]

    ok_run = await create_due_run(storage, job_spec("metrics_ok"))
    dead_run = await create_due_run(
        storage, job_spec("metrics_dead", retry=replace(FAST_RETRY, max_attempts=2))
    )
    await start_worker(registry)
    await wait_until(lambda: final_run(storage, ok_run.id))
    await wait_until(lambda: final_run(storage, dead_run.id))

    # A run is final in the database before its task has counted it and acked it:
    # once nothing is in progress, every count is in.
    def nothing_in_progress() -> bool | None:
        counts = [metric_value("jobs_in_progress", **labels) for labels in (ok, dead)]
        return counts == [0, 0] or None

    await wait_until(nothing_in_progress)

    def increase(name: str, labels: dict[str, str]) -> float:
        return metric_value(name, **labels) - before[(name, labels["type"])]

    assert [increase(name, ok) for name in names] == [1, 1, 0, 0, 0]
    assert [increase(name, dead) for name in names] == [2, 0, 2, 1, 1]
    durations = [
        metric_value("job_duration_seconds_count", **labels) - earlier
        for labels, earlier in zip((ok_duration, dead_duration), durations_before, strict=True)
    ]
    assert durations == [1, 2]  # one attempt succeeded; two failed
