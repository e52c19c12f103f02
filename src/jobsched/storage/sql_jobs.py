"""Jobs in SQL: create (one or a batch), read, list, update, delete and trigger."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jobsched.core.access import AuditEntry
from jobsched.core.errors import ConflictError, InvalidInputError, NotFoundError
from jobsched.core.ids import new_id
from jobsched.core.models import Job, JobSpec, JobStatus, Page, Run, RunStatus, RunTrigger
from jobsched.storage.base import JobFilter
from jobsched.storage.pagination import decode_cursor, encode_cursor
from jobsched.storage.rows import job_from_row, job_values, run_from_row
from jobsched.storage.schema import jobs, runs
from jobsched.storage.sql_base import (
    SQLStorageBase,
    later_version,
    uuid_from_cursor,
    write_audit,
)

# Bookkeeping that changes with every edit; an audit row names the fields a user changed.
_UNAUDITED_JOB_FIELDS = frozenset({"updated_at"})


class SQLJobs(SQLStorageBase):
    """The jobs part of ``SQLStorage``."""

    async def create_job(
        self,
        spec: JobSpec,
        *,
        next_run_at: datetime | None,
        now: datetime,
        audit: AuditEntry | None = None,
    ) -> Job:
        job = _new_job(spec, next_run_at, now)
        if audit is None:
            async with self._writing_name(job.name), self._single_statement() as connection:
                await connection.execute(sa.insert(jobs).values(job_values(job)))
            return job
        async with self._writing_name(job.name), self._transaction() as connection:
            await connection.execute(sa.insert(jobs).values(job_values(job)))
            await write_audit(connection, audit, now, target_kind="job", target_id=job.id)
        return job

    async def create_jobs(
        self,
        planned: Sequence[tuple[JobSpec, datetime | None]],
        *,
        now: datetime,
        audit: AuditEntry | None = None,
    ) -> list[Job]:
        created = [_new_job(spec, next_run_at, now) for spec, next_run_at in planned]
        if not created:
            return []
        position = {job.name: index for index, job in enumerate(created) if job.name is not None}
        async with self._writing_name("(one of the batch)"), self._transaction() as connection:
            if position:
                taken = (
                    await connection.execute(
                        sa.select(jobs.c.name).where(jobs.c.name.in_(list(position)))
                    )
                ).scalars()
                for name in taken:
                    raise ConflictError(
                        f"jobs.{position[name]}.name", f"a job named {name!r} already exists"
                    )
            await connection.execute(sa.insert(jobs), [job_values(job) for job in created])
            for job in created:
                await write_audit(connection, audit, now, target_kind="job", target_id=job.id)
        return created

    @asynccontextmanager
    async def _writing_name(self, name: str | None) -> AsyncIterator[None]:
        try:
            yield
        except sa.exc.IntegrityError as error:
            if name is not None and "name" in str(error.orig):
                raise ConflictError("name", f"a job named {name!r} already exists") from error
            raise

    async def get_job(self, job_id: uuid.UUID) -> Job:
        async with self._single_statement() as connection:
            row = (
                (await connection.execute(sa.select(jobs).where(jobs.c.id == job_id)))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFoundError("job", job_id)
        return job_from_row(row)

    async def list_jobs(
        self, job_filter: JobFilter, *, limit: int, cursor: str | None
    ) -> Page[Job]:
        query = _filtered_jobs(job_filter).limit(limit + 1)
        if job_filter.sort == "created":
            query = query.order_by(jobs.c.id)
            if cursor is not None:
                (after_id,) = decode_cursor(cursor, 1)
                query = query.where(jobs.c.id > uuid_from_cursor(after_id))
        else:
            column = jobs.c.name if job_filter.sort == "name" else jobs.c.next_run_at
            query = query.order_by(column.asc().nulls_last(), jobs.c.id)
            if cursor is not None:
                query = query.where(_after_sorted_cursor(column, job_filter.sort, cursor))
        async with self._single_statement() as connection:
            rows = (await connection.execute(query)).mappings().all()
        items = [job_from_row(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = _job_cursor(items[-1], job_filter.sort)
        return Page(items=items, next_cursor=next_cursor)

    async def update_job(
        self,
        job_id: uuid.UUID,
        edit: Callable[[Job], Job],
        *,
        queues: frozenset[str] | None = None,
        audit: AuditEntry | None = None,
    ) -> Job:
        async with self._transaction() as connection:
            row = (
                (
                    await connection.execute(
                        sa.select(jobs).where(jobs.c.id == job_id).with_for_update()
                    )
                )
                .mappings()
                .first()
            )
            if row is None or (queues is not None and row["queue"] not in queues):
                raise NotFoundError("job", job_id)
            current = job_from_row(row)
            updated = edit(current)
            if updated != current:
                later = later_version(current.updated_at, updated.updated_at)
                updated = dataclasses.replace(updated, updated_at=later)
            values = job_values(updated)
            del values["id"], values["created_at"]
            async with self._writing_name(updated.name):
                await connection.execute(sa.update(jobs).where(jobs.c.id == job_id).values(values))
            await write_audit(
                connection,
                audit,
                updated.updated_at,
                target_kind="job",
                target_id=job_id,
                fields=_changed_fields(current, updated),
            )
        return updated

    async def delete_job(
        self,
        job_id: uuid.UUID,
        *,
        queues: frozenset[str] | None = None,
        audit: AuditEntry | None = None,
    ) -> None:
        statement = sa.delete(jobs).where(jobs.c.id == job_id)
        if queues is not None:
            statement = statement.where(jobs.c.queue.in_(sorted(queues)))
        async with self._transaction() as connection:
            result = await connection.execute(statement.returning(jobs.c.id))
            if result.first() is None:
                raise NotFoundError("job", job_id)
            await write_audit(connection, audit, self._now(), target_kind="job", target_id=job_id)

    async def trigger_job(
        self,
        job_id: uuid.UUID,
        *,
        published: bool,
        payload: dict[str, Any] | None = None,
        queues: frozenset[str] | None = None,
        audit: AuditEntry | None = None,
    ) -> Run:
        # One INSERT ... SELECT copying the job's fields, in autocommit: a trigger is on
        # the path from a request to a run's start, where each round trip shows. The
        # values are sql_firing._new_run_values' for a manual run, as SQL over the job's
        # row. No ON CONFLICT: manual runs are outside uq_runs_fire_time, so a trigger at
        # the instant of another run of the job still makes a run of its own.
        now = self._now()
        values: dict[str, Any] = {
            "id": sa.literal(new_id(), sa.Uuid()),
            "job_id": jobs.c.id,
            "job_type": jobs.c.type,
            "queue": jobs.c.queue,
            "priority": jobs.c.priority,
            "payload": jobs.c.payload
            if payload is None
            else sa.literal(payload, jobs.c.payload.type),
            "timeout_seconds": jobs.c.timeout_seconds,
            "retry": jobs.c.retry,
            "scheduled_for": now,
            "trigger": sa.literal(RunTrigger.MANUAL.value),
            "status": sa.literal(RunStatus.QUEUED.value),
            "attempt": sa.literal(0),
            "not_before": now,
            "published_at": now if published else sa.null(),
            "created_at": now,
            "updated_at": now,
        }
        copied = sa.select(*values.values()).where(jobs.c.id == job_id)
        if queues is not None:
            copied = copied.where(jobs.c.queue.in_(sorted(queues)))
        statement = sa.insert(runs).from_select(list(values), copied).returning(runs)
        if audit is None:
            async with self._single_statement() as connection:
                row = (await connection.execute(statement)).mappings().first()
        else:
            async with self._transaction() as connection:
                row = (await connection.execute(statement)).mappings().first()
                if row is not None:
                    await write_audit(connection, audit, now, target_kind="job", target_id=job_id)
        if row is None:
            raise NotFoundError("job", job_id)
        return run_from_row(row)


def _changed_fields(before: Job, after: Job) -> tuple[str, ...]:
    return tuple(
        item.name
        for item in dataclasses.fields(Job)
        if item.name not in _UNAUDITED_JOB_FIELDS
        and getattr(before, item.name) != getattr(after, item.name)
    )


def _new_job(spec: JobSpec, next_run_at: datetime | None, now: datetime) -> Job:
    return Job(
        id=new_id(),
        name=spec.name,
        type=spec.type,
        schedule=spec.schedule,
        timezone=spec.timezone,
        run_at=spec.run_at,
        payload=spec.payload,
        queue=spec.queue,
        priority=spec.priority,
        timeout_seconds=spec.timeout_seconds,
        retry=spec.retry,
        status=JobStatus.ACTIVE if next_run_at is not None else JobStatus.COMPLETED,
        next_run_at=next_run_at,
        schedule_anchor_at=now,
        last_fired_at=None,
        created_at=now,
        updated_at=now,
        misfire_policy=spec.misfire_policy,
        misfire_grace_seconds=spec.misfire_grace_seconds,
        concurrency_policy=spec.concurrency_policy,
    )


def _escape_like(text: str) -> str:
    """``text`` matched literally by LIKE: its wildcards and the escape itself escaped."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filtered_jobs(job_filter: JobFilter) -> sa.Select[Any]:
    query = sa.select(jobs)
    if job_filter.type is not None:
        query = query.where(jobs.c.type == job_filter.type)
    if job_filter.status is not None:
        query = query.where(jobs.c.status == job_filter.status.value)
    if job_filter.queue is not None:
        query = query.where(jobs.c.queue == job_filter.queue)
    if job_filter.queues is not None:
        query = query.where(jobs.c.queue.in_(sorted(job_filter.queues)))
    if job_filter.search:
        pattern = "%" + _escape_like(job_filter.search.lower()) + "%"
        query = query.where(
            sa.or_(
                sa.func.lower(jobs.c.name).like(pattern, escape="\\"),
                sa.func.lower(jobs.c.type).like(pattern, escape="\\"),
            )
        )
    return query


def _job_cursor(job: Job, sort: str) -> str:
    if sort == "created":
        return encode_cursor(str(job.id))
    if sort == "name":
        return encode_cursor(job.name, str(job.id))
    next_run = job.next_run_at.isoformat() if job.next_run_at is not None else None
    return encode_cursor(next_run, str(job.id))


def _after_sorted_cursor(
    column: sa.ColumnElement[Any], sort: str, cursor: str
) -> sa.ColumnElement[bool]:
    """Rows after the cursor's (value, id) in ``column`` ascending, nulls last, then id."""
    value, after_id_text = decode_cursor(cursor, 2)
    after_id = uuid_from_cursor(after_id_text)
    if value is None:
        return sa.and_(column.is_(None), jobs.c.id > after_id)
    if not isinstance(value, str):
        raise InvalidInputError("cursor", "not a cursor returned by this API")
    bound: Any = value
    if sort == "next_run":
        try:
            bound = datetime.fromisoformat(value)
        except ValueError as error:
            raise InvalidInputError("cursor", "not a cursor returned by this API") from error
        if bound.tzinfo is None:
            raise InvalidInputError("cursor", "not a cursor returned by this API")
    return sa.or_(
        column > bound,
        sa.and_(column == bound, jobs.c.id > after_id),
        column.is_(None),
    )
