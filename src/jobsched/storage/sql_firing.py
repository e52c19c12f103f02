"""The scheduler's tick in SQL: firing due jobs, with their concurrency policies."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from jobsched.core.concurrency import ActiveRun, apply_concurrency_policy
from jobsched.core.ids import new_id
from jobsched.core.models import (
    ACTIVE_RUN_STATUSES,
    AttemptStatus,
    ConcurrencyPolicy,
    Job,
    JobStatus,
    Run,
    RunStatus,
    RunTrigger,
)
from jobsched.core.planning import FirePlan
from jobsched.storage.rows import job_from_row, run_from_row
from jobsched.storage.schema import FIRED_BY_SCHEDULE, UTCDateTime, attempts, jobs, runs
from jobsched.storage.sql_base import SQLStorageBase, later_version
from jobsched.storage.sql_webhooks import record_run_events

_ACTIVE = [status.value for status in ACTIVE_RUN_STATUSES]
_REPLACED_ERROR = "cancelled: replaced by a newer run (concurrency_policy: replace)"


class SQLFiring(SQLStorageBase):
    """The firing part of ``SQLStorage``: what the scheduler does at each tick."""

    async def earliest_next_run_at(self) -> datetime | None:
        query = sa.select(sa.func.min(jobs.c.next_run_at)).where(
            jobs.c.status == JobStatus.ACTIVE.value
        )
        async with self._single_statement() as connection:
            value = (await connection.execute(query)).scalar_one_or_none()
        return UTCDateTime().process_result_value(value, self._engine.dialect)

    async def fire_due_jobs(
        self,
        now: datetime,
        limit: int,
        plan: Callable[[Job], FirePlan],
        *,
        published: bool,
    ) -> list[Run]:
        due = (
            sa.select(jobs)
            .where(jobs.c.status == JobStatus.ACTIVE.value, jobs.c.next_run_at <= now)
            .order_by(jobs.c.next_run_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self._transaction() as connection:
            due_jobs = [job_from_row(row) for row in (await connection.execute(due)).mappings()]
            if not due_jobs:
                return []
            active = await self._lock_active_runs(
                connection,
                [
                    job.id
                    for job in due_jobs
                    if job.concurrency_policy is not ConcurrencyPolicy.ALLOW
                ],
            )
            new_runs: list[dict[str, Any]] = []
            job_changes: list[dict[str, Any]] = []
            replaced: list[uuid.UUID] = []
            for job in due_jobs:
                fire_plan = plan(job)
                decision = apply_concurrency_policy(
                    job.concurrency_policy, fire_plan.fire_times, active.get(job.id, [])
                )
                new_runs.extend(
                    _new_run_values(job, at, RunTrigger.SCHEDULE, now, published)
                    for at in decision.queued
                )
                new_runs.extend(
                    _skipped_run_values(job, at, reason, now) for at, reason in decision.skipped
                )
                replaced.extend(decision.cancel)
                job_changes.append(_advanced_job_values(job, fire_plan, now))
            await connection.execute(_ADVANCE_JOB, job_changes)
            await self._cancel_replaced_runs(connection, replaced)
            created = await self._insert_runs(connection, new_runs)
            skipped = [run for run in created if run.status is RunStatus.SKIPPED]
            await record_run_events(
                connection, self._webhook_subscriptions, "job.fire_skipped", skipped, self._now()
            )
            return created

    async def _lock_active_runs(
        self, connection: AsyncConnection, job_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, list[ActiveRun]]:
        """The queued/running/retrying runs of ``job_ids``, locked against workers' updates."""
        if not job_ids:
            return {}
        query = (
            sa.select(runs.c.id, runs.c.job_id, runs.c.status, runs.c.scheduled_for)
            .where(runs.c.job_id.in_(job_ids), runs.c.status.in_(_ACTIVE))
            .order_by(runs.c.scheduled_for)
            .with_for_update()
        )
        active: dict[uuid.UUID, list[ActiveRun]] = {}
        for run_id, job_id, status, scheduled_for in (await connection.execute(query)).all():
            active.setdefault(job_id, []).append(
                ActiveRun(run_id, RunStatus(status), _as_utc(scheduled_for, self._engine))
            )
        return active

    async def _cancel_replaced_runs(
        self, connection: AsyncConnection, run_ids: list[uuid.UUID]
    ) -> None:
        """``concurrency_policy: replace``: end the earlier runs; their workers lose the lease."""
        if not run_ids:
            return
        await connection.execute(
            sa.update(runs)
            .where(runs.c.id.in_(run_ids), runs.c.status.in_(_ACTIVE))
            .values(
                status=RunStatus.CANCELLED.value,
                lease_owner=None,
                lease_expires_at=None,
                finished_at=self._now(),
                updated_at=self._now(),
                last_error=_REPLACED_ERROR,
            )
        )
        await connection.execute(
            sa.update(attempts)
            .where(
                attempts.c.run_id.in_(run_ids),
                attempts.c.status == AttemptStatus.RUNNING.value,
            )
            .values(
                status=AttemptStatus.CANCELLED.value,
                finished_at=self._now(),
                error=_REPLACED_ERROR,
            )
        )

    async def _insert_runs(
        self, connection: AsyncConnection, values: list[dict[str, Any]]
    ) -> list[Run]:
        if not values:
            return []
        statement = (
            self._insert(runs)
            .on_conflict_do_nothing(
                index_elements=["job_id", "scheduled_for"], index_where=FIRED_BY_SCHEDULE
            )
            .returning(runs)
        )
        result = await connection.execute(statement, values)
        return [run_from_row(row) for row in result.mappings().all()]


_ADVANCE_JOB = (
    sa.update(jobs)
    .where(jobs.c.id == sa.bindparam("job_id"))
    .values(
        next_run_at=sa.bindparam("new_next_run_at"),
        status=sa.bindparam("new_status"),
        last_fired_at=sa.bindparam("new_last_fired_at"),
        updated_at=sa.bindparam("new_updated_at"),
    )
)


def _advanced_job_values(job: Job, plan: FirePlan, now: datetime) -> dict[str, Any]:
    status = JobStatus.ACTIVE if plan.next_run_at is not None else JobStatus.COMPLETED
    return {
        "job_id": job.id,
        "new_next_run_at": plan.next_run_at,
        "new_status": status.value,
        "new_last_fired_at": max(plan.fire_times, default=job.last_fired_at),
        "new_updated_at": later_version(job.updated_at, now),
    }


def _new_run_values(
    job: Job, scheduled_for: datetime, trigger: RunTrigger, now: datetime, published: bool
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "job_id": job.id,
        "job_type": job.type,
        "queue": job.queue,
        "priority": job.priority,
        "payload": job.payload,
        "timeout_seconds": job.timeout_seconds,
        "retry": job.retry.to_json(),
        "scheduled_for": scheduled_for,
        "trigger": trigger.value,
        "status": RunStatus.QUEUED.value,
        "attempt": 0,
        "not_before": scheduled_for,
        "published_at": now if published else None,
        "created_at": now,
        "updated_at": now,
    }


def _skipped_run_values(
    job: Job, scheduled_for: datetime, reason: str, now: datetime
) -> dict[str, Any]:
    """A fire time recorded but not run: final at once, never published."""
    values = _new_run_values(job, scheduled_for, RunTrigger.SCHEDULE, now, published=True)
    values.update(status=RunStatus.SKIPPED.value, finished_at=now, last_error=reason)
    return values


def _as_utc(value: Any, engine: AsyncEngine) -> datetime:
    converted = UTCDateTime().process_result_value(value, engine.dialect)
    assert converted is not None
    return converted
