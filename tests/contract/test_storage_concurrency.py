"""Storage contract under contention, on PostgreSQL: replicas never share a fire time or a run.

Each "replica" is a ``SQLStorage`` with its own engine (its own connections), as
separate scheduler or worker processes would have.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from jobsched.core.models import Job, Run
from jobsched.core.planning import FirePlan
from jobsched.storage.database import SQLStorage
from jobsched.storage.schema import attempts, runs
from jobsched.storage.urls import parse_database_url
from tests.contract.storage_scenario import EPOCH, fire_at, job_spec

REPLICAS = 4
pytestmark = pytest.mark.postgres


@pytest.fixture
async def replicas(postgres_url: str) -> AsyncIterator[list[SQLStorage]]:
    stores = [SQLStorage.from_url(postgres_url, pool_size=2) for _ in range(REPLICAS)]
    yield stores
    for store in stores:
        await store.close()


def _scalar(postgres_url: str, query: sa.Select[Any]) -> int:
    engine = sa.create_engine(parse_database_url(postgres_url).sync_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(query).scalar_one())
    finally:
        engine.dispose()


async def _create_due_jobs(storage: SQLStorage, count: int) -> list[Job]:
    return list(
        await asyncio.gather(
            *(
                storage.create_job(job_spec(), next_run_at=EPOCH, now=EPOCH - timedelta(days=1))
                for _ in range(count)
            )
        )
    )


async def test_concurrent_schedulers_fire_every_due_job_exactly_once(
    replicas: list[SQLStorage], postgres_url: str
) -> None:
    jobs = await _create_due_jobs(replicas[0], 200)
    planned: Counter[tuple[uuid.UUID, datetime]] = Counter()
    rounds = 3

    def plan(job: Job) -> FirePlan:
        assert job.next_run_at is not None
        planned[(job.id, job.next_run_at)] += 1
        return FirePlan([job.next_run_at], next_run_at=job.next_run_at + timedelta(minutes=1))

    async def scheduler(storage: SQLStorage, now: datetime) -> list[Run]:
        fired: list[Run] = []
        while batch := await storage.fire_due_jobs(now, 7, plan, published=True):
            fired.extend(batch)
        return fired

    fired: list[Run] = []
    for round_number in range(rounds):
        now = EPOCH + timedelta(minutes=round_number)
        results = await asyncio.gather(*(scheduler(storage, now) for storage in replicas))
        fired.extend(run for result in results for run in result)

    expected = {(job.id, EPOCH + timedelta(minutes=m)) for job in jobs for m in range(rounds)}
    assert Counter((run.job_id, run.scheduled_for) for run in fired) == Counter(expected)
    assert set(planned) == expected
    assert max(planned.values()) == 1, "a job was planned by two replicas"
    assert _scalar(postgres_url, sa.select(sa.func.count()).select_from(runs)) == 200 * rounds
    assert (
        _scalar(
            postgres_url,
            sa.select(sa.func.count(sa.distinct(sa.tuple_(runs.c.job_id, runs.c.scheduled_for)))),
        )
        == 200 * rounds
    )


async def test_concurrent_workers_claim_every_ready_run_exactly_once(
    replicas: list[SQLStorage], postgres_url: str
) -> None:
    now = await replicas[0].now()
    (job,) = await _create_due_jobs(replicas[0], 1)
    fire_times = [now - timedelta(seconds=second) for second in range(1, 301)]
    created = await replicas[0].fire_due_jobs(EPOCH, 1, fire_at(fire_times, None), published=True)
    assert len(created) == 300
    assert {run.job_id for run in created} == {job.id}

    async def worker(storage: SQLStorage, worker_id: str) -> list[Run]:
        claimed: list[Run] = []
        while batch := await storage.claim_ready_runs(["default"], 9, worker_id, 60.0):
            claimed.extend(batch)
        return claimed

    results = await asyncio.gather(
        *(worker(storage, f"worker-{index}") for index, storage in enumerate(replicas))
    )

    claimed = Counter(run.id for result in results for run in result)
    assert claimed == Counter({run.id: 1 for run in created})
    assert all(len(result) > 0 for result in results), "the claims were not concurrent"
    assert _scalar(postgres_url, sa.select(sa.func.count()).select_from(attempts)) == 300
    assert _scalar(postgres_url, sa.select(sa.func.max(runs.c.attempt))) == 1


async def test_duplicate_deliveries_are_claimed_once(
    replicas: list[SQLStorage], postgres_url: str
) -> None:
    jobs = await _create_due_jobs(replicas[0], 100)
    created = [await replicas[0].trigger_job(job.id, published=True) for job in jobs]
    run_ids = [run.id for run in created]

    results = await asyncio.gather(
        *(
            storage.claim_runs(run_ids[index::2] + run_ids, f"worker-{index}", 60.0)
            for index, storage in enumerate(replicas)
        )
    )

    claimed = Counter(run.id for result in results for run in result)
    assert claimed == Counter(dict.fromkeys(run_ids, 1))
    assert _scalar(postgres_url, sa.select(sa.func.count()).select_from(attempts)) == 100


async def test_a_job_locked_by_another_transaction_is_skipped_not_waited_for(
    replicas: list[SQLStorage], postgres_url: str
) -> None:
    locked, free = await _create_due_jobs(replicas[0], 2)
    with psycopg.connect(postgres_url) as connection:
        # Another replica (or an edit through update_job) holds the row.
        connection.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (locked.id,))

        fired = await asyncio.wait_for(
            replicas[1].fire_due_jobs(EPOCH, 10, fire_at([EPOCH], None), published=True),
            timeout=10,
        )

    assert [run.job_id for run in fired] == [free.id]
