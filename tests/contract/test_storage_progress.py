"""Storage contract: progress reports ride on lease renewals, fenced like them."""

from __future__ import annotations

import uuid

from jobsched.core.models import AttemptStatus, JsonObject, RunStatus
from jobsched.storage.base import AttemptOutcome, Storage
from tests.contract.storage_scenario import StorageScenario


async def progress_by_attempt(storage: Storage, run_id: uuid.UUID) -> dict[int, JsonObject | None]:
    return {attempt.attempt: attempt.progress for attempt in await storage.list_attempts(run_id)}


async def test_a_renewal_stores_each_attempts_own_progress(
    storage: Storage, scenario: StorageScenario
) -> None:
    first = await scenario.claimed_run(worker_id="worker-1")
    second = await scenario.claimed_run(worker_id="worker-1")
    quiet = await scenario.claimed_run(worker_id="worker-1")

    renewed = await storage.renew_leases(
        "worker-1",
        [(first.id, 1), (second.id, 1), (quiet.id, 1)],
        300.0,
        progress={(first.id, 1): {"done": 1}, (second.id, 1): {"done": 2, "of": 9}},
    )

    assert renewed == {first.id, second.id, quiet.id}
    assert await progress_by_attempt(storage, first.id) == {1: {"done": 1}}
    assert await progress_by_attempt(storage, second.id) == {1: {"done": 2, "of": 9}}
    assert await progress_by_attempt(storage, quiet.id) == {1: None}


async def test_a_later_renewal_replaces_the_progress_and_one_without_keeps_it(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.claimed_run(worker_id="worker-1")

    await storage.renew_leases("worker-1", [(run.id, 1)], 300.0, progress={(run.id, 1): {"n": 1}})
    await storage.renew_leases("worker-1", [(run.id, 1)], 300.0, progress={(run.id, 1): {"n": 2}})
    await storage.renew_leases("worker-1", [(run.id, 1)], 300.0)

    assert await progress_by_attempt(storage, run.id) == {1: {"n": 2}}


async def test_progress_is_not_stored_for_a_lease_another_worker_holds(
    storage: Storage, scenario: StorageScenario
) -> None:
    mine = await scenario.claimed_run(worker_id="worker-1")
    theirs = await scenario.claimed_run(worker_id="worker-2")

    renewed = await storage.renew_leases(
        "worker-1",
        [(mine.id, 1), (theirs.id, 1)],
        300.0,
        progress={(mine.id, 1): {"mine": True}, (theirs.id, 1): {"mine": False}},
    )

    assert renewed == {mine.id}
    assert await progress_by_attempt(storage, mine.id) == {1: {"mine": True}}
    assert await progress_by_attempt(storage, theirs.id) == {1: None}


async def test_progress_of_a_stale_attempt_reaches_neither_attempt(
    storage: Storage, scenario: StorageScenario
) -> None:
    """Rescued and claimed again by the same worker: attempt 1's late report is refused."""
    run = await scenario.claimed_run(worker_id="worker-1", retry={"max_attempts": 3})
    scenario.expire_leases([run.id])
    await storage.rescue_expired_leases(10)
    (again,) = await storage.claim_runs([run.id], "worker-1", 60.0)
    assert again.attempt == 2

    renewed = await storage.renew_leases(
        "worker-1", [(run.id, 1)], 300.0, progress={(run.id, 1): {"late": True}}
    )

    assert renewed == set()
    assert await progress_by_attempt(storage, run.id) == {1: None, 2: None}


async def test_progress_of_a_cancelled_run_is_not_stored(
    storage: Storage, scenario: StorageScenario
) -> None:
    run = await scenario.claimed_run(worker_id="worker-1")
    await storage.cancel_run(run.id)

    renewed = await storage.renew_leases(
        "worker-1", [(run.id, 1)], 300.0, progress={(run.id, 1): {"after": "cancel"}}
    )

    assert renewed == set()
    assert await progress_by_attempt(storage, run.id) == {1: None}


async def test_a_finished_attempt_keeps_its_last_stored_progress(
    storage: Storage, scenario: StorageScenario
) -> None:
    succeeded = await scenario.claimed_run(worker_id="worker-1")
    failed = await scenario.claimed_run(worker_id="worker-1", retry={"max_attempts": 1})
    await storage.renew_leases(
        "worker-1",
        [(succeeded.id, 1), (failed.id, 1)],
        300.0,
        progress={(succeeded.id, 1): {"step": 3}, (failed.id, 1): {"step": 1}},
    )

    accepted = await storage.finish_attempts(
        [
            AttemptOutcome(
                succeeded.id,
                1,
                "worker-1",
                AttemptStatus.SUCCEEDED,
                RunStatus.SUCCEEDED,
                result={"sent": True},
            ),
            AttemptOutcome(
                failed.id, 1, "worker-1", AttemptStatus.FAILED, RunStatus.DEAD, error="boom"
            ),
        ]
    )

    assert accepted == [True, True]
    (done,) = await storage.list_attempts(succeeded.id)
    assert (done.status, done.result, done.progress) == (
        AttemptStatus.SUCCEEDED,
        {"sent": True},
        {"step": 3},
    )
    (dead,) = await storage.list_attempts(failed.id)
    assert (dead.status, dead.progress) == (AttemptStatus.FAILED, {"step": 1})
