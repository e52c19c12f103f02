"""Housekeeping: one leader among replicas, handed over when it dies; history pruned in batches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from jobsched.config.settings import RetentionSettings, SchedulerSettings
from jobsched.core.models import AttemptStatus, JobSpec, RunStatus
from jobsched.core.webhooks import Subscription
from jobsched.queue.database import DatabaseQueue
from jobsched.scheduler.housekeeping import Housekeeper
from jobsched.storage.base import AttemptOutcome
from jobsched.storage.database import SQLStorage
from jobsched.storage.leadership import AdvisoryLockLeadership, AlwaysLeader, leadership_for
from jobsched.storage.schema import attempts, runs, webhook_deliveries
from jobsched.storage.urls import parse_database_url
from tests.helpers import create_due_run


@pytest.fixture
async def leaders(postgres_url: str) -> AsyncIterator[list[AdvisoryLockLeadership]]:
    database = parse_database_url(postgres_url)
    candidates = [AdvisoryLockLeadership(database, lock_key=99) for _ in range(3)]
    yield candidates
    for candidate in candidates:
        await candidate.close()


async def test_exactly_one_replica_leads_and_another_takes_over(
    leaders: list[AdvisoryLockLeadership],
) -> None:
    first, second, third = leaders
    assert [await first.is_leader(), await second.is_leader(), await third.is_leader()] == [
        True,
        False,
        False,
    ]
    assert await first.is_leader()  # keeps leading while its session lives
    await first.close()  # the leader's connection is gone, as when its process dies
    taken_over = [await second.is_leader(), await third.is_leader()]
    assert taken_over == [True, False]


async def test_sqlite_deployments_always_lead(sqlite_url: str) -> None:
    leadership = leadership_for(parse_database_url(sqlite_url))
    assert isinstance(leadership, AlwaysLeader)
    assert await leadership.is_leader()


async def _finished_run(storage: SQLStorage, finished_days_ago: float, sql: sa.Engine) -> None:
    run = await create_due_run(storage, JobSpec(type="noop", payload={}))
    (claimed,) = await storage.claim_runs([run.id], "worker", 30)
    await storage.finish_attempts(
        [AttemptOutcome(claimed.id, 1, "worker", AttemptStatus.SUCCEEDED, RunStatus.SUCCEEDED)]
    )
    with sql.begin() as connection:
        connection.execute(
            sa.update(runs)
            .where(runs.c.id == run.id)
            .values(finished_at=datetime.now(UTC) - timedelta(days=finished_days_ago))
        )


def _count(sql: sa.Engine, table: sa.Table) -> int:
    with sql.begin() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


async def test_history_older_than_retention_is_pruned_in_batches(
    storage: SQLStorage, database_url: str
) -> None:
    sql = sa.create_engine(parse_database_url(database_url).sync_url)
    try:
        for _ in range(5):
            await _finished_run(storage, finished_days_ago=40, sql=sql)
        await _finished_run(storage, finished_days_ago=10, sql=sql)
        active = await create_due_run(storage, JobSpec(type="noop", payload={}))
        housekeeper = Housekeeper(
            storage,
            DatabaseQueue(storage),
            SchedulerSettings(),
            RetentionSettings(days=30, batch_size=2),
        )

        assert await housekeeper.prune_history() == 5

        assert _count(sql, runs) == 2  # the recent finished run and the active one
        assert _count(sql, attempts) == 1  # the attempts of pruned runs went with them
        assert (await storage.get_run(active.id)).status is RunStatus.QUEUED
        assert await housekeeper.prune_history() == 0
    finally:
        sql.dispose()


async def test_done_notifications_older_than_retention_are_pruned(
    storage: SQLStorage, database_url: str
) -> None:
    storage.set_webhook_subscriptions(
        [Subscription(endpoint="https://a.example/", events=frozenset({"run.dead"}))]
    )
    sql = sa.create_engine(parse_database_url(database_url).sync_url)
    try:
        for _ in range(3):
            run = await create_due_run(storage, JobSpec(type="noop", payload={}))
            (claimed,) = await storage.claim_runs([run.id], "worker", 30)
            dead = AttemptOutcome(claimed.id, 1, "worker", AttemptStatus.FAILED, RunStatus.DEAD)
            assert await storage.finish_attempts([dead]) == [True]
        assert _count(sql, webhook_deliveries) == 3
        delivered, _given_up, pending = await storage.claim_webhook_deliveries(10, 30)
        await storage.mark_webhook_delivered(delivered.id)
        await storage.give_up_webhook_delivery(_given_up.id, "too old")
        with sql.begin() as connection:
            connection.execute(
                sa.update(webhook_deliveries).values(
                    created_at=datetime.now(UTC) - timedelta(days=40)
                )
            )
        housekeeper = Housekeeper(
            storage,
            DatabaseQueue(storage),
            SchedulerSettings(),
            RetentionSettings(days=30, batch_size=1),
        )

        await housekeeper.prune_history()

        with sql.begin() as connection:
            left = connection.execute(sa.select(webhook_deliveries.c.id)).scalars().all()
        assert left == [pending.id]
    finally:
        sql.dispose()
