"""Storage contract: the worker's side — claims, leases, outcomes and rescue."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta

from jobsched.core.models import AttemptStatus, JsonObject, Run, RunStatus
from jobsched.storage.base import AttemptOutcome, RescueReport, Storage
from tests.contract.storage_scenario import EPOCH, StorageScenario, fire_at

LONG_AGO = EPOCH - timedelta(days=3650)  # a retry time that is already past


def _outcome(
    run: Run,
    run_status: RunStatus,
    attempt_status: AttemptStatus = AttemptStatus.FAILED,
    *,
    worker_id: str | None = None,
    attempt: int | None = None,
    error: str | None = None,
    result: JsonObject | None = None,
    retry_at: datetime | None = None,
) -> AttemptOutcome:
    """The outcome ``run``'s lease holder would report, unless told otherwise."""
    holder = worker_id if worker_id is not None else run.lease_owner
    assert holder is not None
    return AttemptOutcome(
        run_id=run.id,
        attempt=attempt if attempt is not None else run.attempt,
        worker_id=holder,
        attempt_status=attempt_status,
        run_status=run_status,
        error=error,
        result=result,
        retry_at=retry_at,
    )


# --- claim_ready_runs --------------------------------------------------------------------


async def test_claim_ready_runs_takes_the_highest_priority_first(
    storage: Storage, scenario: StorageScenario
) -> None:
    low, high, middle = [await scenario.ready_run(priority=p) for p in (1, 5, 3)]

    first = await storage.claim_ready_runs(["default"], 2, "worker-1", 30.0)
    second = await storage.claim_ready_runs(["default"], 2, "worker-1", 30.0)

    assert [run.id for run in first] == [high.id, middle.id]
    assert [run.id for run in second] == [low.id]


async def test_a_claimed_run_is_not_claimed_again(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.ready_run()
    await storage.claim_ready_runs(["default"], 10, "worker-1", 30.0)

    assert await storage.claim_ready_runs(["default"], 10, "worker-2", 30.0) == []
    assert (await storage.get_run(run.id)).lease_owner == "worker-1"


async def test_claim_ready_runs_takes_only_the_given_queues(
    storage: Storage, scenario: StorageScenario
) -> None:
    wanted = [await scenario.ready_run(queue=queue) for queue in ("emails", "reports")]
    other = await scenario.ready_run(queue="default")

    claimed = await storage.claim_ready_runs(["emails", "reports"], 10, "worker-1", 30.0)

    assert sorted(run.id for run in claimed) == sorted(run.id for run in wanted)
    assert (await storage.get_run(other.id)).status == RunStatus.QUEUED


async def test_claim_ready_runs_waits_for_not_before(
    storage: Storage, scenario: StorageScenario
) -> None:
    now = await storage.now()
    await scenario.job(next_run_at=now - timedelta(minutes=1))
    fire_times = [now - timedelta(minutes=1), now + timedelta(minutes=10)]
    fired = await storage.fire_due_jobs(now, 10, fire_at(fire_times, None), published=True)
    due = next(run for run in fired if run.scheduled_for < now)

    claimed = await storage.claim_ready_runs(["default"], 10, "worker-1", 30.0)

    assert [run.id for run in claimed] == [due.id]
    assert await storage.ready_run_counts() == {"default": 1}


async def test_a_claim_starts_an_attempt_under_a_lease(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.ready_run()
    before = await storage.now()

    (claimed,) = await storage.claim_ready_runs(["default"], 10, "worker-7", 45.0)

    after = await storage.now()
    assert (claimed.id, claimed.status, claimed.attempt) == (run.id, RunStatus.RUNNING, 1)
    assert claimed.lease_owner == "worker-7"
    assert claimed.lease_expires_at is not None
    slack = timedelta(seconds=1)
    assert before + timedelta(seconds=45) - slack <= claimed.lease_expires_at
    assert claimed.lease_expires_at <= after + timedelta(seconds=45) + slack
    assert claimed.started_at is not None
    assert before - slack <= claimed.started_at <= after + slack
    assert await storage.get_run(run.id) == claimed
    (attempt,) = await storage.list_attempts(run.id)
    assert (attempt.attempt, attempt.status, attempt.worker_id) == (
        1,
        AttemptStatus.RUNNING,
        "worker-7",
    )
    assert attempt.finished_at is None


async def test_nothing_to_claim_or_renew(storage: Storage) -> None:
    assert await storage.claim_ready_runs(["default"], 10, "worker-1", 30.0) == []
    assert await storage.claim_runs([], "worker-1", 30.0) == []
    assert await storage.claim_runs([uuid.uuid4()], "worker-1", 30.0) == []
    assert await storage.renew_leases("worker-1", [], 30.0) == set()
    assert await storage.finish_attempts([]) == []


# --- claim_runs ----------------------------------------------------------------------------


async def test_claim_runs_claims_only_claimable_runs(
    storage: Storage, scenario: StorageScenario
) -> None:
    queued = await scenario.ready_run()
    retrying = await scenario.claimed_run(worker_id="worker-1")
    await storage.finish_attempts([_outcome(retrying, RunStatus.RETRYING, retry_at=LONG_AGO)])
    running = await scenario.claimed_run(worker_id="worker-1")
    succeeded = await scenario.claimed_run(worker_id="worker-1")
    await storage.finish_attempts(
        [_outcome(succeeded, RunStatus.SUCCEEDED, AttemptStatus.SUCCEEDED)]
    )
    dead = await scenario.claimed_run(worker_id="worker-1")
    await storage.finish_attempts([_outcome(dead, RunStatus.DEAD)])
    untouched = {run.id: await storage.get_run(run.id) for run in (running, succeeded, dead)}

    claimed = await storage.claim_runs(
        [queued.id, retrying.id, running.id, succeeded.id, dead.id, uuid.uuid4()],
        "worker-2",
        30.0,
    )

    assert sorted(run.id for run in claimed) == sorted([queued.id, retrying.id])
    assert {run.id: run.attempt for run in claimed} == {queued.id: 1, retrying.id: 2}
    assert all(run.lease_owner == "worker-2" for run in claimed)
    for run_id, before in untouched.items():
        assert await storage.get_run(run_id) == before
    assert scenario.count_attempts(running.id) == 1


# --- renew_leases ---------------------------------------------------------------------------


async def test_renew_leases_extends_the_leases_the_worker_holds(
    storage: Storage, scenario: StorageScenario
) -> None:
    mine = await scenario.claimed_run(worker_id="worker-1", lease_seconds=5.0)
    old_expiry = mine.lease_expires_at
    assert old_expiry is not None

    renewed = await storage.renew_leases("worker-1", [(mine.id, 1)], 300.0)

    assert renewed == {mine.id}
    new_expiry = scenario.lease_expiry(mine.id)
    assert new_expiry is not None
    assert new_expiry >= old_expiry + timedelta(seconds=290)


async def test_renew_leases_is_fenced_by_owner_and_attempt(
    storage: Storage, scenario: StorageScenario
) -> None:
    mine = await scenario.claimed_run(worker_id="worker-1", lease_seconds=5.0)
    theirs = await scenario.claimed_run(worker_id="worker-2", lease_seconds=5.0)
    stale = await scenario.claimed_run(worker_id="worker-1", lease_seconds=5.0)
    expiries = {run.id: scenario.lease_expiry(run.id) for run in (mine, theirs, stale)}

    renewed = await storage.renew_leases(
        "worker-1", [(mine.id, 1), (theirs.id, 1), (stale.id, 0), (uuid.uuid4(), 1)], 300.0
    )

    assert renewed == {mine.id}
    assert scenario.lease_expiry(theirs.id) == expiries[theirs.id]
    assert scenario.lease_expiry(stale.id) == expiries[stale.id]


async def test_a_finished_run_is_not_renewed(storage: Storage, scenario: StorageScenario) -> None:
    run = await scenario.claimed_run(worker_id="worker-1")
    await storage.finish_attempts([_outcome(run, RunStatus.SUCCEEDED, AttemptStatus.SUCCEEDED)])

    assert await storage.renew_leases("worker-1", [(run.id, 1)], 300.0) == set()
    assert scenario.lease_expiry(run.id) is None


async def test_renew_leases_of_a_whole_worker_at_once(
    storage: Storage, scenario: StorageScenario
) -> None:
    now = await storage.now()
    await scenario.job(next_run_at=now)
    fire_times = [now - timedelta(milliseconds=ms) for ms in range(1, 1201)]
    await storage.fire_due_jobs(now, 1, fire_at(fire_times, None), published=True)
    claimed = await storage.claim_ready_runs(["default"], 1200, "worker-1", 5.0)

    renewed = await storage.renew_leases(
        "worker-1", [(run.id, run.attempt) for run in claimed], 300.0
    )

    assert len(claimed) == 1200
    assert renewed == {run.id for run in claimed}


# --- finish_attempts -----------------------------------------------------------------------


async def test_a_success_is_recorded_on_the_run_and_its_attempt(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.claimed_run(worker_id="worker-1")

    accepted = await storage.finish_attempts(
        [_outcome(run, RunStatus.SUCCEEDED, AttemptStatus.SUCCEEDED, result={"status": 200})]
    )

    assert accepted == [True]
    finished = await storage.get_run(run.id)
    assert finished.status == RunStatus.SUCCEEDED
    assert finished.result == {"status": 200}
    assert finished.finished_at is not None
    assert (finished.lease_owner, finished.lease_expires_at) == (None, None)
    assert finished.attempt == 1
    (attempt,) = await storage.list_attempts(run.id)
    assert (attempt.status, attempt.result, attempt.error) == (
        AttemptStatus.SUCCEEDED,
        {"status": 200},
        None,
    )
    assert attempt.finished_at is not None
    assert await storage.ready_run_counts() == {}


async def test_a_retry_waits_until_retry_at(storage: Storage, scenario: StorageScenario) -> None:
    run = await scenario.claimed_run(worker_id="worker-1")
    retry_at = (await storage.now()) + timedelta(minutes=5)

    accepted = await storage.finish_attempts(
        [
            _outcome(
                run,
                RunStatus.RETRYING,
                AttemptStatus.TIMED_OUT,
                error="timed out after 3 s",
                retry_at=retry_at,
            )
        ]
    )

    assert accepted == [True]
    retrying = await storage.get_run(run.id)
    assert (retrying.status, retrying.not_before, retrying.finished_at) == (
        RunStatus.RETRYING,
        retry_at,
        None,
    )
    assert retrying.last_error == "timed out after 3 s"
    assert (retrying.lease_owner, retrying.lease_expires_at) == (None, None)
    (attempt,) = await storage.list_attempts(run.id)
    assert (attempt.status, attempt.error) == (AttemptStatus.TIMED_OUT, "timed out after 3 s")
    assert await storage.ready_run_counts() == {"default": 1}
    assert await storage.claim_ready_runs(["default"], 10, "worker-2", 30.0) == []


async def test_a_retry_already_due_is_claimed_as_the_next_attempt(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.claimed_run(worker_id="worker-1")
    await storage.finish_attempts([_outcome(run, RunStatus.RETRYING, retry_at=LONG_AGO)])

    (again,) = await storage.claim_ready_runs(["default"], 10, "worker-2", 30.0)

    assert (again.id, again.attempt, again.lease_owner) == (run.id, 2, "worker-2")
    assert again.started_at == run.started_at  # the run started with its first attempt
    assert [a.status for a in await storage.list_attempts(run.id)] == [
        AttemptStatus.FAILED,
        AttemptStatus.RUNNING,
    ]


async def test_a_dead_run_is_finished(storage: Storage, scenario: StorageScenario) -> None:
    run = await scenario.claimed_run(worker_id="worker-1")

    accepted = await storage.finish_attempts([_outcome(run, RunStatus.DEAD, error="HTTP 500")])

    assert accepted == [True]
    dead = await storage.get_run(run.id)
    assert (dead.status, dead.last_error) == (RunStatus.DEAD, "HTTP 500")
    assert dead.finished_at is not None
    assert await storage.ready_run_counts() == {}


async def test_only_the_lease_holder_of_the_current_attempt_may_finish(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.claimed_run(worker_id="worker-1")
    before = await storage.get_run(run.id)
    attempts_before = await storage.list_attempts(run.id)

    accepted = await storage.finish_attempts(
        [
            _outcome(run, RunStatus.SUCCEEDED, worker_id="worker-2"),
            _outcome(run, RunStatus.SUCCEEDED, attempt=2),
            _outcome(run, RunStatus.DEAD, attempt=0),
        ]
    )

    assert accepted == [False, False, False]
    assert await storage.get_run(run.id) == before
    assert await storage.list_attempts(run.id) == attempts_before


async def test_an_outcome_is_accepted_once(storage: Storage, scenario: StorageScenario) -> None:
    run = await scenario.claimed_run(worker_id="worker-1")
    other = await scenario.claimed_run(worker_id="worker-1")

    accepted = await storage.finish_attempts(
        [
            _outcome(run, RunStatus.SUCCEEDED, AttemptStatus.SUCCEEDED),
            _outcome(run, RunStatus.DEAD, error="late duplicate"),
            _outcome(other, RunStatus.SUCCEEDED, AttemptStatus.SUCCEEDED),
        ]
    )
    finished = await storage.get_run(run.id)
    again = await storage.finish_attempts([_outcome(run, RunStatus.DEAD)])

    assert accepted == [True, False, True]
    assert again == [False]
    assert (finished.status, finished.last_error) == (RunStatus.SUCCEEDED, None)
    assert await storage.get_run(run.id) == finished


# --- rescue_expired_leases ---------------------------------------------------------------


async def test_an_expired_lease_is_rescued_for_a_retry(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.claimed_run(worker_id="worker-1")
    scenario.expire_leases([run.id])

    report = await storage.rescue_expired_leases(10)

    now = await storage.now()
    rescued = await storage.get_run(run.id)
    assert report == RescueReport(requeued=[rescued], dead=[])
    assert (rescued.status, rescued.attempt) == (RunStatus.RETRYING, 1)
    assert (rescued.lease_owner, rescued.lease_expires_at, rescued.finished_at) == (
        None,
        None,
        None,
    )
    assert rescued.not_before <= now
    assert rescued.last_error is not None
    (attempt,) = await storage.list_attempts(run.id)
    assert attempt.status == AttemptStatus.LOST
    assert attempt.error is not None
    assert attempt.finished_at is not None
    (again,) = await storage.claim_ready_runs(["default"], 10, "worker-2", 30.0)
    assert (again.id, again.attempt) == (run.id, 2)


async def test_an_expired_lease_on_the_last_attempt_ends_dead(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.claimed_run(worker_id="worker-1", retry={"max_attempts": 1})
    scenario.expire_leases([run.id])

    report = await storage.rescue_expired_leases(10)

    dead = await storage.get_run(run.id)
    assert report == RescueReport(requeued=[], dead=[dead])
    assert dead.status == RunStatus.DEAD
    assert dead.finished_at is not None
    assert [a.status for a in await storage.list_attempts(run.id)] == [AttemptStatus.LOST]
    assert await storage.ready_run_counts() == {}


async def test_unexpired_leases_are_left_alone(storage: Storage, scenario: StorageScenario) -> None:
    run = await scenario.claimed_run(worker_id="worker-1", lease_seconds=300.0)
    await scenario.ready_run()

    report = await storage.rescue_expired_leases(10)

    assert report == RescueReport()
    assert await storage.get_run(run.id) == run


async def test_rescue_takes_at_most_limit_runs(storage: Storage, scenario: StorageScenario) -> None:
    claimed = [await scenario.claimed_run() for _ in range(3)]
    scenario.expire_leases([run.id for run in claimed])

    first = await storage.rescue_expired_leases(2)
    second = await storage.rescue_expired_leases(2)

    assert (len(first.requeued), len(second.requeued)) == (2, 1)
    assert {run.id for run in [*first.requeued, *second.requeued]} == {run.id for run in claimed}


async def test_the_rescued_worker_can_no_longer_renew_or_finish(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.claimed_run(worker_id="worker-1")
    scenario.expire_leases([run.id])
    await storage.rescue_expired_leases(10)
    (again,) = await storage.claim_runs([run.id], "worker-1", 30.0)  # same worker, new attempt

    renewed = await storage.renew_leases("worker-1", [(run.id, 1)], 300.0)
    accepted = await storage.finish_attempts([_outcome(run, RunStatus.SUCCEEDED, attempt=1)])

    assert renewed == set()
    assert accepted == [False]
    assert await storage.get_run(run.id) == again


async def test_a_lease_expires_on_the_database_clock(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.claimed_run(worker_id="worker-1", lease_seconds=0.05)
    deadline = time.monotonic() + 10

    report = await storage.rescue_expired_leases(10)
    while not report.requeued:
        assert time.monotonic() < deadline, "a 0.05 s lease did not expire within 10 s"
        await asyncio.sleep(0.01)
        report = await storage.rescue_expired_leases(10)

    assert [rescued.id for rescued in report.requeued] == [run.id]
