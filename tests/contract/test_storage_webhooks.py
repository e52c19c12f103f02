"""Storage contract: the notification outbox (webhook deliveries) on both databases."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from jobsched.core.models import AttemptStatus, ConcurrencyPolicy, RunStatus
from jobsched.core.webhooks import Subscription
from jobsched.storage.base import AttemptOutcome
from jobsched.storage.database import SQLStorage
from jobsched.storage.schema import webhook_deliveries
from tests.contract.storage_scenario import EPOCH, StorageScenario, fire_at

DEAD_ONLY = Subscription(endpoint="https://a.example/", events=frozenset({"run.dead"}))


def _dead(run_id: object, attempt: int, worker_id: str) -> AttemptOutcome:
    return AttemptOutcome(
        run_id=run_id,  # type: ignore[arg-type]
        attempt=attempt,
        worker_id=worker_id,
        attempt_status=AttemptStatus.FAILED,
        run_status=RunStatus.DEAD,
        error="boom",
        result=None,
        retry_at=None,
    )


async def test_nothing_is_recorded_without_subscriptions(
    storage: SQLStorage, scenario: StorageScenario
) -> None:
    run = await scenario.claimed_run(retry={"max_attempts": 1})

    assert await storage.finish_attempts([_dead(run.id, run.attempt, "worker-1")]) == [True]

    assert scenario.count(webhook_deliveries) == 0


async def test_a_dead_outcome_records_one_delivery_per_wanting_endpoint(
    storage: SQLStorage, scenario: StorageScenario
) -> None:
    storage.set_webhook_subscriptions(
        [
            DEAD_ONLY,
            Subscription(endpoint="https://b.example/", events=frozenset({"run.dead"})),
            Subscription(
                endpoint="https://other-queue.example/",
                events=frozenset({"run.dead"}),
                queues=frozenset({"billing"}),
            ),
            Subscription(endpoint="https://retrying.example/", events=frozenset({"run.retrying"})),
        ]
    )
    run = await scenario.claimed_run(name="nightly", retry={"max_attempts": 1})

    await storage.finish_attempts([_dead(run.id, run.attempt, "worker-1")])

    deliveries = await storage.claim_webhook_deliveries(10, hold_seconds=30)
    assert sorted(d.endpoint for d in deliveries) == ["https://a.example/", "https://b.example/"]
    data = deliveries[0].data
    assert data["run_id"] == str(run.id)
    assert data["job_name"] == "nightly"
    assert data["error"] == "boom"
    assert data["attempt"] == 1
    assert data["finished_at"] is not None
    assert {d.event_type for d in deliveries} == {"run.dead"}


async def test_a_refused_outcome_records_nothing(
    storage: SQLStorage, scenario: StorageScenario
) -> None:
    storage.set_webhook_subscriptions([DEAD_ONLY])
    run = await scenario.claimed_run(retry={"max_attempts": 1})

    assert await storage.finish_attempts([_dead(run.id, run.attempt, "someone-else")]) == [False]

    assert scenario.count(webhook_deliveries) == 0


async def test_a_rescue_out_of_attempts_records_run_dead(
    storage: SQLStorage, scenario: StorageScenario
) -> None:
    storage.set_webhook_subscriptions([DEAD_ONLY])
    dead = await scenario.claimed_run(retry={"max_attempts": 1})
    retried = await scenario.claimed_run(retry={"max_attempts": 3})
    scenario.expire_leases([dead.id, retried.id])

    await storage.rescue_expired_leases(10)

    (delivery,) = await storage.claim_webhook_deliveries(10, hold_seconds=30)
    assert delivery.data["run_id"] == str(dead.id)
    assert delivery.data["error"].startswith("lease expired")


async def test_a_claimed_delivery_is_held_then_retried_then_delivered(
    storage: SQLStorage, scenario: StorageScenario
) -> None:
    storage.set_webhook_subscriptions([DEAD_ONLY])
    run = await scenario.claimed_run(retry={"max_attempts": 1})
    await storage.finish_attempts([_dead(run.id, run.attempt, "worker-1")])

    (delivery,) = await storage.claim_webhook_deliveries(10, hold_seconds=30)
    assert await storage.claim_webhook_deliveries(10, hold_seconds=30) == []
    assert await storage.count_webhook_backlog() == 1

    await storage.retry_webhook_delivery(delivery.id, delay_seconds=0, error="connection refused")
    (again,) = await storage.claim_webhook_deliveries(10, hold_seconds=30)
    assert again.id == delivery.id
    assert again.attempts == 1

    await storage.mark_webhook_delivered(delivery.id)
    assert await storage.count_webhook_backlog() == 0
    assert await storage.claim_webhook_deliveries(10, hold_seconds=0) == []
    assert (
        scenario.count(
            webhook_deliveries,
            webhook_deliveries.c.delivered_at.is_not(None),
            webhook_deliveries.c.attempts == 2,
            webhook_deliveries.c.last_error == "connection refused",
        )
        == 1
    )


async def test_given_up_and_delivered_rows_are_pruned_pending_ones_kept(
    storage: SQLStorage, scenario: StorageScenario
) -> None:
    storage.set_webhook_subscriptions([DEAD_ONLY])
    for _ in range(3):
        run = await scenario.claimed_run(retry={"max_attempts": 1})
        await storage.finish_attempts([_dead(run.id, run.attempt, "worker-1")])
    first, second, _pending = await storage.claim_webhook_deliveries(10, hold_seconds=30)
    await storage.mark_webhook_delivered(first.id)
    await storage.give_up_webhook_delivery(second.id, "too old")

    later = EPOCH + timedelta(days=365 * 30)
    assert await storage.prune_webhook_deliveries(later, limit=100) == 2

    with scenario.sql.connect() as connection:
        left = connection.execute(sa.select(webhook_deliveries.c.id)).scalars().all()
    assert left == [_pending.id]


async def test_a_fire_time_skipped_by_the_concurrency_policy_records_job_fire_skipped(
    storage: SQLStorage, scenario: StorageScenario
) -> None:
    storage.set_webhook_subscriptions(
        [
            DEAD_ONLY,
            Subscription(endpoint="https://skips.example/", events=frozenset({"job.fire_skipped"})),
        ]
    )
    await scenario.job(next_run_at=EPOCH, concurrency_policy=ConcurrencyPolicy.FORBID)
    fire_times = [EPOCH, EPOCH + timedelta(minutes=1)]

    fired = await storage.fire_due_jobs(EPOCH, 10, fire_at(fire_times, None), published=True)

    (skipped,) = [run for run in fired if run.status == RunStatus.SKIPPED]
    (delivery,) = await storage.claim_webhook_deliveries(10, hold_seconds=30)
    assert delivery.endpoint == "https://skips.example/"
    assert delivery.event_type == "job.fire_skipped"
    assert delivery.data["run_id"] == str(skipped.id)
