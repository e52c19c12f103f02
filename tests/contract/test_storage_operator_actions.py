"""Storage contract: what operators and stopping workers do to runs, and the worker registry.

``cancel_run``, ``retry_run``, ``release_runs`` and the ``workers`` records, on
SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from jobsched.core.errors import ConflictError, NotFoundError
from jobsched.core.models import AttemptStatus, ConcurrencyPolicy, OutboxRun, Run, RunStatus
from jobsched.storage.base import AttemptOutcome, Storage, WorkerInfo
from jobsched.storage.schema import workers
from tests.contract.storage_scenario import EPOCH, StorageScenario, fire_at

LONG_AGO = EPOCH - timedelta(days=3650)  # a retry time that is already past
SLACK = timedelta(seconds=1)  # between the test's reads of the clock and the statement's


async def _end_attempt(
    storage: Storage,
    run: Run,
    run_status: RunStatus,
    attempt_status: AttemptStatus = AttemptStatus.FAILED,
    retry_at: datetime | None = None,
) -> Run:
    """Report ``run``'s current attempt as its lease holder would; return the run after."""
    assert run.lease_owner is not None
    outcome = AttemptOutcome(
        run_id=run.id,
        attempt=run.attempt,
        worker_id=run.lease_owner,
        attempt_status=attempt_status,
        run_status=run_status,
        error=f"attempt {run.attempt} failed",
        retry_at=retry_at,
    )
    assert await storage.finish_attempts([outcome]) == [True]
    return await storage.get_run(run.id)


async def _claim(storage: Storage, run: Run, worker_id: str = "worker-1") -> Run:
    (claimed,) = await storage.claim_runs([run.id], worker_id, 60.0)
    return claimed


async def _skipped_run(storage: Storage, scenario: StorageScenario) -> Run:
    """A fire time recorded ``skipped`` by ``concurrency_policy: forbid``."""
    await scenario.job(next_run_at=EPOCH, concurrency_policy=ConcurrencyPolicy.FORBID)
    fire_times = [EPOCH, EPOCH + timedelta(minutes=1)]
    fired = await storage.fire_due_jobs(EPOCH, 10, fire_at(fire_times, None), published=True)
    (skipped,) = [run for run in fired if run.status == RunStatus.SKIPPED]
    return skipped


_ENDINGS = {
    RunStatus.RETRYING: AttemptStatus.FAILED,
    RunStatus.SUCCEEDED: AttemptStatus.SUCCEEDED,
    RunStatus.DEAD: AttemptStatus.FAILED,
}


async def _run_in(status: RunStatus, storage: Storage, scenario: StorageScenario) -> Run:
    """A run brought to ``status`` the way the system gets it there."""
    if status == RunStatus.QUEUED:
        return await scenario.ready_run()
    if status == RunStatus.SKIPPED:
        return await _skipped_run(storage, scenario)
    running = await scenario.claimed_run(worker_id="worker-1")
    if status == RunStatus.RUNNING:
        return running
    if status == RunStatus.CANCELLED:
        return await storage.cancel_run(running.id)
    retry_at = LONG_AGO if status == RunStatus.RETRYING else None
    return await _end_attempt(storage, running, status, _ENDINGS[status], retry_at=retry_at)


# --- release_runs ---------------------------------------------------------------------------


async def test_a_released_first_attempt_goes_back_to_queued_as_if_never_claimed(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.claimed_run(worker_id="worker-1")
    before = await storage.now()

    released = await storage.release_runs("worker-1", [(run.id, 1)])

    after = await storage.now()
    stored = await storage.get_run(run.id)
    assert released == [stored]
    assert (stored.status, stored.attempt, stored.started_at) == (RunStatus.QUEUED, 0, None)
    assert (stored.lease_owner, stored.lease_expires_at, stored.published_at) == (None, None, None)
    assert before - SLACK <= stored.not_before <= after + SLACK
    assert stored.last_error is not None
    assert "worker-1" in stored.last_error
    assert "not counted" in stored.last_error
    assert await storage.list_attempts(run.id) == []


async def test_a_released_run_is_claimed_by_another_worker_as_the_same_attempt(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.claimed_run(worker_id="worker-1")
    await storage.release_runs("worker-1", [(run.id, 1)])

    (claimed,) = await storage.claim_ready_runs(["default"], 10, "worker-2", 60.0)

    assert (claimed.id, claimed.attempt, claimed.lease_owner) == (run.id, 1, "worker-2")
    (attempt,) = await storage.list_attempts(run.id)
    assert (attempt.attempt, attempt.worker_id) == (1, "worker-2")


async def test_a_released_later_attempt_goes_back_to_retrying_keeping_earlier_ones(
    storage: Storage, scenario: StorageScenario
) -> None:
    first = await scenario.claimed_run(worker_id="worker-1")
    await _end_attempt(storage, first, RunStatus.RETRYING, retry_at=LONG_AGO)
    second = await _claim(storage, first, "worker-2")
    assert second.attempt == 2

    (released,) = await storage.release_runs("worker-2", [(second.id, 2)])

    assert (released.status, released.attempt) == (RunStatus.RETRYING, 1)
    assert released.started_at == first.started_at
    (kept,) = await storage.list_attempts(first.id)
    assert (kept.attempt, kept.status, kept.worker_id) == (1, AttemptStatus.FAILED, "worker-1")


async def test_release_runs_is_fenced_by_owner_attempt_and_status(
    storage: Storage, scenario: StorageScenario
) -> None:
    mine = await scenario.claimed_run(worker_id="worker-1")
    theirs = await scenario.claimed_run(worker_id="worker-2")
    stale = await scenario.claimed_run(worker_id="worker-1")
    finished = await _end_attempt(
        storage, await scenario.claimed_run(worker_id="worker-1"), RunStatus.DEAD
    )
    untouched = {run.id: await storage.get_run(run.id) for run in (theirs, stale, finished)}

    released = await storage.release_runs(
        "worker-1",
        [(mine.id, 1), (theirs.id, 1), (stale.id, 2), (finished.id, 1), (uuid.uuid4(), 1)],
    )

    assert [run.id for run in released] == [mine.id]
    for run_id, before in untouched.items():
        assert await storage.get_run(run_id) == before
        assert len(await storage.list_attempts(run_id)) == 1


async def test_the_releasing_worker_can_no_longer_renew_or_finish(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.claimed_run(worker_id="worker-1")
    await storage.release_runs("worker-1", [(run.id, 1)])

    assert await storage.renew_leases("worker-1", [(run.id, 1)], 60.0) == set()
    outcome = AttemptOutcome(
        run.id, 1, "worker-1", AttemptStatus.SUCCEEDED, RunStatus.SUCCEEDED, result={"ok": True}
    )
    assert await storage.finish_attempts([outcome]) == [False]
    assert (await storage.get_run(run.id)).status == RunStatus.QUEUED


async def test_released_runs_go_through_the_outbox_again(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.claimed_run(worker_id="worker-1")
    await storage.release_runs("worker-1", [(run.id, 1)])
    published: list[OutboxRun] = []

    async def publish(batch: list[OutboxRun]) -> None:
        published.extend(batch)

    assert await storage.publish_pending(10, publish) == 1
    assert [item.id for item in published] == [run.id]


async def test_releasing_nothing_changes_nothing(storage: Storage) -> None:
    assert await storage.release_runs("worker-1", []) == []


# --- cancel_run -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.RETRYING])
async def test_a_waiting_run_is_cancelled_and_never_claimed(
    status: RunStatus, storage: Storage, scenario: StorageScenario
) -> None:
    run = await _run_in(status, storage, scenario)
    attempts_before = await storage.list_attempts(run.id)
    before = await storage.now()

    cancelled = await storage.cancel_run(run.id)

    after = await storage.now()
    assert cancelled == await storage.get_run(run.id)
    assert (cancelled.status, cancelled.last_error) == (RunStatus.CANCELLED, "cancelled by request")
    assert cancelled.attempt == run.attempt
    assert cancelled.finished_at is not None
    assert before - SLACK <= cancelled.finished_at <= after + SLACK
    assert await storage.list_attempts(run.id) == attempts_before
    assert await storage.claim_runs([run.id], "worker-2", 60.0) == []
    assert await storage.claim_ready_runs(["default"], 10, "worker-2", 60.0) == []


async def test_a_running_run_is_cancelled_with_its_attempt_and_its_worker_fenced_out(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.claimed_run(worker_id="worker-1")

    cancelled = await storage.cancel_run(run.id)

    assert cancelled.status == RunStatus.CANCELLED
    assert (cancelled.lease_owner, cancelled.lease_expires_at) == (None, None)
    assert cancelled.finished_at is not None
    (attempt,) = await storage.list_attempts(run.id)
    assert (attempt.status, attempt.error) == (AttemptStatus.CANCELLED, "cancelled by request")
    assert attempt.finished_at is not None
    assert await storage.renew_leases("worker-1", [(run.id, 1)], 60.0) == set()
    late = AttemptOutcome(run.id, 1, "worker-1", AttemptStatus.SUCCEEDED, RunStatus.SUCCEEDED)
    assert await storage.finish_attempts([late]) == [False]
    assert await storage.get_run(run.id) == cancelled


async def test_a_cancelled_running_run_is_not_rescued_later(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.claimed_run(worker_id="worker-1")
    scenario.expire_leases([run.id])  # its worker went silent too
    cancelled = await storage.cancel_run(run.id)

    report = await storage.rescue_expired_leases(10)

    assert (report.requeued, report.dead) == ([], [])
    assert await storage.get_run(run.id) == cancelled


@pytest.mark.parametrize(
    "status", [RunStatus.SUCCEEDED, RunStatus.DEAD, RunStatus.CANCELLED, RunStatus.SKIPPED]
)
async def test_a_finished_run_cannot_be_cancelled_and_is_left_as_it_was(
    status: RunStatus, storage: Storage, scenario: StorageScenario
) -> None:
    run = await _run_in(status, storage, scenario)
    attempts_before = await storage.list_attempts(run.id)

    with pytest.raises(ConflictError) as raised:
        await storage.cancel_run(run.id)

    assert raised.value.field == "status"
    assert status.value in raised.value.message
    assert await storage.get_run(run.id) == run
    assert await storage.list_attempts(run.id) == attempts_before


async def test_cancelling_an_unknown_run_raises_not_found(storage: Storage) -> None:
    missing = uuid.uuid4()

    with pytest.raises(NotFoundError) as raised:
        await storage.cancel_run(missing)

    assert (raised.value.resource, raised.value.identifier) == ("run", missing)


# --- retry_run ------------------------------------------------------------------------------


async def test_a_dead_run_is_queued_again_with_a_fresh_attempt_budget(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.claimed_run(worker_id="worker-1", retry={"max_attempts": 1})
    dead = await _end_attempt(storage, run, RunStatus.DEAD)
    before = await storage.now()

    retried = await storage.retry_run(run.id)

    after = await storage.now()
    assert retried == await storage.get_run(run.id)
    assert (retried.status, retried.attempt, retried.retry.max_attempts) == (
        RunStatus.QUEUED,
        1,
        2,
    )
    assert before - SLACK <= retried.not_before <= after + SLACK
    assert (retried.finished_at, retried.published_at) == (None, None)
    assert (retried.lease_owner, retried.lease_expires_at) == (None, None)
    assert retried.started_at == dead.started_at
    assert retried.retry.backoff == dead.retry.backoff
    (claimed,) = await storage.claim_ready_runs(["default"], 10, "worker-2", 60.0)
    assert (claimed.id, claimed.attempt) == (run.id, 2)
    assert [attempt.attempt for attempt in await storage.list_attempts(run.id)] == [1, 2]


async def test_a_cancelled_run_is_queued_again_with_its_full_budget_after_its_attempts(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.claimed_run(worker_id="worker-1", retry={"max_attempts": 3})
    await storage.cancel_run(run.id)

    retried = await storage.retry_run(run.id)

    assert (retried.status, retried.attempt, retried.retry.max_attempts) == (
        RunStatus.QUEUED,
        1,
        4,
    )


async def test_each_retry_grants_the_original_budget_again_not_a_growing_one(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.ready_run(retry={"max_attempts": 2})
    budgets = []
    for _ in range(3):
        for _attempt in range(2):
            claimed = await _claim(storage, run)
            last = claimed.attempt == claimed.retry.max_attempts
            await _end_attempt(
                storage,
                claimed,
                RunStatus.DEAD if last else RunStatus.RETRYING,
                retry_at=None if last else LONG_AGO,
            )
        retried = await storage.retry_run(run.id)
        budgets.append((retried.attempt, retried.retry.max_attempts))

    assert budgets == [(2, 4), (4, 6), (6, 8)]


async def test_a_retried_run_goes_through_the_outbox(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await _run_in(RunStatus.DEAD, storage, scenario)
    await storage.retry_run(run.id)
    published: list[OutboxRun] = []

    async def publish(batch: list[OutboxRun]) -> None:
        published.extend(batch)

    assert await storage.publish_pending(10, publish) == 1
    assert [item.id for item in published] == [run.id]


@pytest.mark.parametrize(
    "status",
    [
        RunStatus.QUEUED,
        RunStatus.RUNNING,
        RunStatus.RETRYING,
        RunStatus.SUCCEEDED,
        RunStatus.SKIPPED,
    ],
)
async def test_only_dead_or_cancelled_runs_can_be_retried(
    status: RunStatus, storage: Storage, scenario: StorageScenario
) -> None:
    run = await _run_in(status, storage, scenario)
    attempts_before = await storage.list_attempts(run.id)

    with pytest.raises(ConflictError) as raised:
        await storage.retry_run(run.id)

    assert raised.value.field == "status"
    assert status.value in raised.value.message
    assert await storage.get_run(run.id) == run
    assert await storage.list_attempts(run.id) == attempts_before


async def test_retrying_an_unknown_run_raises_not_found(storage: Storage) -> None:
    missing = uuid.uuid4()

    with pytest.raises(NotFoundError) as raised:
        await storage.retry_run(missing)

    assert (raised.value.resource, raised.value.identifier) == ("run", missing)


# --- the worker registry -------------------------------------------------------------------


def _info(worker_id: str = "host-a-4242", **overrides: object) -> WorkerInfo:
    values: dict[str, object] = {
        "id": worker_id,
        "host": "host-a",
        "pid": 4242,
        "queues": ["default", "emails"],
        "handler_types": ["http", "noop"],
        "concurrency": 10,
    }
    values.update(overrides)
    return WorkerInfo(**values)  # type: ignore[arg-type]  # test data, checked by the asserts


def _set_worker_times(scenario: StorageScenario, worker_id: str, **times: datetime) -> None:
    with scenario.sql.begin() as connection:
        connection.execute(sa.update(workers).where(workers.c.id == worker_id).values(**times))


async def test_register_worker_records_it_alive_on_the_database_clock(storage: Storage) -> None:
    info = _info()
    before = await storage.now()

    record = await storage.register_worker(info)

    after = await storage.now()
    assert record.info == info
    assert record.started_at == record.heartbeat_at
    assert before - SLACK <= record.started_at <= after + SLACK
    assert record.started_at.tzinfo is UTC
    assert (record.stopped_at, record.runs_in_progress) == (None, 0)
    assert await storage.list_workers() == [record]


async def test_a_heartbeat_moves_heartbeat_at_and_counts_runs_in_progress(
    storage: Storage, scenario: StorageScenario
) -> None:
    record = await storage.register_worker(_info())
    long_ago = record.started_at - timedelta(hours=1)
    _set_worker_times(scenario, record.info.id, started_at=long_ago, heartbeat_at=long_ago)
    before = await storage.now()

    assert await storage.worker_heartbeat(record.info.id, 7) is True

    after = await storage.now()
    (stored,) = await storage.list_workers()
    assert stored.runs_in_progress == 7
    assert stored.started_at == long_ago
    assert before - SLACK <= stored.heartbeat_at <= after + SLACK


async def test_a_heartbeat_of_an_unknown_worker_is_refused_and_creates_nothing(
    storage: Storage,
) -> None:
    assert await storage.worker_heartbeat("nobody-1", 3) is False
    assert await storage.list_workers() == []


async def test_deregister_worker_marks_it_stopped_and_keeps_the_record(
    storage: Storage,
) -> None:
    record = await storage.register_worker(_info())
    await storage.worker_heartbeat(record.info.id, 4)
    before = await storage.now()

    await storage.deregister_worker(record.info.id)
    await storage.deregister_worker("nobody-1")

    after = await storage.now()
    (stored,) = await storage.list_workers()
    assert stored.info == record.info
    assert stored.runs_in_progress == 0
    assert stored.stopped_at is not None
    assert before - SLACK <= stored.stopped_at <= after + SLACK


async def test_registering_an_id_again_starts_the_record_afresh(
    storage: Storage, scenario: StorageScenario
) -> None:
    first = await storage.register_worker(_info(concurrency=2))
    long_ago = first.started_at - timedelta(hours=1)
    _set_worker_times(scenario, first.info.id, started_at=long_ago, heartbeat_at=long_ago)
    await storage.worker_heartbeat(first.info.id, 2)
    await storage.deregister_worker(first.info.id)
    again = _info(pid=977, queues=["reports"], handler_types=["shell"], concurrency=20)

    second = await storage.register_worker(again)

    assert await storage.list_workers() == [second]
    assert second.info == again
    assert (second.stopped_at, second.runs_in_progress) == (None, 0)
    assert second.started_at > long_ago


async def test_list_workers_shows_the_newest_start_first(
    storage: Storage, scenario: StorageScenario
) -> None:
    older = await storage.register_worker(_info("host-a-1"))
    newer = await storage.register_worker(_info("host-b-2"))
    _set_worker_times(scenario, older.info.id, started_at=older.started_at - timedelta(hours=1))

    listed = await storage.list_workers()

    assert [record.info.id for record in listed] == [newer.info.id, older.info.id]


async def test_prune_workers_deletes_those_last_seen_before_the_given_time(
    storage: Storage, scenario: StorageScenario
) -> None:
    now = await storage.now()
    hour_ago, day_ago = now - timedelta(hours=1), now - timedelta(days=1)
    for worker_id in ("alive", "stopped-long-ago", "stopped-lately", "silent"):
        await storage.register_worker(_info(worker_id))
    _set_worker_times(scenario, "alive", started_at=day_ago)
    _set_worker_times(
        scenario, "stopped-long-ago", started_at=day_ago, heartbeat_at=day_ago, stopped_at=day_ago
    )
    _set_worker_times(scenario, "stopped-lately", heartbeat_at=day_ago, stopped_at=now)
    _set_worker_times(scenario, "silent", started_at=day_ago, heartbeat_at=day_ago)

    pruned = await storage.prune_workers(hour_ago)

    assert pruned == 2
    remaining = {record.info.id for record in await storage.list_workers()}
    assert remaining == {"alive", "stopped-lately"}
    assert await storage.prune_workers(hour_ago) == 0


# --- count_unpublished (the outbox backlog gauge) ---------------------------------------


async def test_the_outbox_backlog_counts_due_unpublished_runs_only(
    storage: Storage, scenario: StorageScenario
) -> None:
    await scenario.ready_run(published=True)
    waiting = [await scenario.ready_run(published=False) for _ in range(2)]
    assert await storage.count_unpublished() == 2

    published: list[OutboxRun] = []

    async def publish(batch: list[OutboxRun]) -> None:
        published.extend(batch)

    assert await storage.publish_pending(10, publish) == 2
    assert sorted(item.id for item in published) == sorted(run.id for run in waiting)
    assert await storage.count_unpublished() == 0
