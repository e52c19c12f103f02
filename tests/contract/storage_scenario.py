"""Building blocks for the storage contract suite: jobs, runs in each state, direct SQL.

The direct SQL (a separate synchronous engine on the same database) is how the
suite checks what was written or not written, and how it moves time for one
row (an expired lease) without waiting for the wall clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from jobsched.core.models import Job, JobSpec, RetryPolicy, Run
from jobsched.core.planning import FirePlan
from jobsched.storage.base import Storage
from jobsched.storage.schema import attempts, jobs, runs

# A fixed instant for tests that never compare with the database clock.
EPOCH = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def job_spec(**overrides: Any) -> JobSpec:
    """A plain job; ``overrides`` replace any field (``retry`` may be a dict of policy fields)."""
    retry = overrides.pop("retry", {})
    policy = retry if isinstance(retry, RetryPolicy) else RetryPolicy(jitter=False, **retry)
    spec = JobSpec(type="noop", payload={"n": 1}, retry=policy)
    return replace(spec, **overrides)


def fire_at(
    fire_times: Sequence[datetime], next_run_at: datetime | None
) -> Callable[[Job], FirePlan]:
    """A plan that fires every job at ``fire_times`` and moves it to ``next_run_at``."""
    return lambda _job: FirePlan(fire_times=list(fire_times), next_run_at=next_run_at)


def fire_once(step: timedelta | None) -> Callable[[Job], FirePlan]:
    """Fire each job at its due time; the next one ``step`` later (None: a one-time job)."""

    def plan(job: Job) -> FirePlan:
        assert job.next_run_at is not None
        following = None if step is None else job.next_run_at + step
        return FirePlan(fire_times=[job.next_run_at], next_run_at=following)

    return plan


class StorageScenario:
    """Creates jobs and runs through ``storage``; reads and nudges rows through plain SQL."""

    def __init__(self, storage: Storage, sql: sa.Engine) -> None:
        self.storage = storage
        self.sql = sql

    async def job(self, *, next_run_at: datetime | None = EPOCH, **overrides: Any) -> Job:
        now = overrides.pop("now", EPOCH - timedelta(days=1))
        return await self.storage.create_job(
            job_spec(**overrides), next_run_at=next_run_at, now=now
        )

    async def ready_run(self, *, published: bool = True, **overrides: Any) -> Run:
        """A queued manual run, claimable now (its job itself is not due for years)."""
        job = await self.job(next_run_at=EPOCH + timedelta(days=3650), **overrides)
        return await self.storage.trigger_job(job.id, published=published)

    async def claimed_run(
        self, worker_id: str = "worker-1", lease_seconds: float = 60.0, **overrides: Any
    ) -> Run:
        run = await self.ready_run(**overrides)
        (claimed,) = await self.storage.claim_runs([run.id], worker_id, lease_seconds)
        return claimed

    # --- plain SQL ---------------------------------------------------------------

    def count(self, table: sa.Table, *conditions: sa.ColumnElement[bool]) -> int:
        with self.sql.connect() as connection:
            query = sa.select(sa.func.count()).select_from(table).where(*conditions)
            return int(connection.execute(query).scalar_one())

    def count_jobs(self) -> int:
        return self.count(jobs)

    def count_runs(self, job_id: uuid.UUID | None = None) -> int:
        return self.count(runs, *([] if job_id is None else [runs.c.job_id == job_id]))

    def count_attempts(self, run_id: uuid.UUID) -> int:
        return self.count(attempts, attempts.c.run_id == run_id)

    def expire_leases(self, run_ids: Sequence[uuid.UUID]) -> None:
        """Move these runs' lease expiry an hour into the past, as if the worker went silent."""
        with self.sql.begin() as connection:
            connection.execute(
                sa.update(runs)
                .where(runs.c.id.in_(list(run_ids)))
                .values(lease_expires_at=datetime.now(UTC) - timedelta(hours=1))
            )

    def lease_expiry(self, run_id: uuid.UUID) -> datetime | None:
        with self.sql.connect() as connection:
            query = sa.select(runs.c.lease_expires_at).where(runs.c.id == run_id)
            value = connection.execute(query).scalar_one()
        assert value is None or isinstance(value, datetime)
        return value
