"""Runs in SQL as the API and operators see them: reads, cancel, retry and pruning."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobsched.core.access import AuditEntry
from jobsched.core.errors import ConflictError, InvalidInputError, NotFoundError
from jobsched.core.models import (
    FINAL_RUN_STATUSES,
    Attempt,
    AttemptStatus,
    Page,
    Run,
    RunStatus,
)
from jobsched.storage.pagination import decode_cursor, encode_cursor
from jobsched.storage.rows import attempt_from_row, run_from_row
from jobsched.storage.schema import attempts, runs
from jobsched.storage.sql_base import SQLStorageBase, uuid_from_cursor, write_audit

_FINAL = [status.value for status in FINAL_RUN_STATUSES]
_CANCELLED_ERROR = "cancelled by request"
_RETRYABLE_RUN_STATUSES = frozenset({RunStatus.DEAD, RunStatus.CANCELLED})
# Kept in a run's retry policy JSON by retry_run: the max_attempts the run was created
# with, so each manual retry grants that many attempts again (not twice as many).
_ORIGINAL_MAX_ATTEMPTS = "original_max_attempts"


class SQLRuns(SQLStorageBase):
    """The runs part of ``SQLStorage`` that serves the API, operators and retention."""

    async def get_run(self, run_id: uuid.UUID) -> Run:
        async with self._single_statement() as connection:
            row = (
                (await connection.execute(sa.select(runs).where(runs.c.id == run_id)))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFoundError("run", run_id)
        return run_from_row(row)

    async def list_attempts(self, run_id: uuid.UUID) -> list[Attempt]:
        query = sa.select(attempts).where(attempts.c.run_id == run_id).order_by(attempts.c.attempt)
        async with self._single_statement() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [attempt_from_row(row) for row in rows]

    async def list_runs(
        self,
        *,
        job_id: uuid.UUID | None,
        status: RunStatus | None,
        limit: int,
        cursor: str | None,
        queues: frozenset[str] | None = None,
    ) -> Page[Run]:
        query = (
            sa.select(runs).order_by(runs.c.scheduled_for.desc(), runs.c.id.desc()).limit(limit + 1)
        )
        if queues is not None:
            query = query.where(runs.c.queue.in_(sorted(queues)))
        if job_id is not None:
            query = query.where(runs.c.job_id == job_id)
        if status is not None:
            query = query.where(runs.c.status == status.value)
        if cursor is not None:
            query = query.where(_runs_before_cursor(cursor))
        async with self._single_statement() as connection:
            rows = (await connection.execute(query)).mappings().all()
        items = [run_from_row(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = encode_cursor(last.scheduled_for.isoformat(), str(last.id))
        return Page(items=items, next_cursor=next_cursor)

    # --- retention ---------------------------------------------------------------

    async def prune_history(self, finished_before: datetime, batch_size: int) -> int:
        oldest = (
            sa.select(runs.c.id)
            .where(runs.c.status.in_(_FINAL), runs.c.finished_at < finished_before)
            .order_by(runs.c.finished_at)
            .limit(batch_size)
        )
        if self.dialect == "postgresql":
            oldest = oldest.with_for_update(skip_locked=True)
        async with self._transaction() as connection:
            result = await connection.execute(sa.delete(runs).where(runs.c.id.in_(oldest)))
        return result.rowcount

    # --- operators ---------------------------------------------------------------

    async def _locked_run_row(
        self, connection: AsyncConnection, run_id: uuid.UUID, queues: frozenset[str] | None
    ) -> sa.RowMapping:
        query = sa.select(runs).where(runs.c.id == run_id).with_for_update()
        row = (await connection.execute(query)).mappings().first()
        if row is None or (queues is not None and row["queue"] not in queues):
            raise NotFoundError("run", run_id)
        return row

    async def cancel_run(
        self,
        run_id: uuid.UUID,
        *,
        queues: frozenset[str] | None = None,
        audit: AuditEntry | None = None,
    ) -> Run:
        async with self._transaction() as connection:
            run = run_from_row(await self._locked_run_row(connection, run_id, queues))
            if run.status.is_final:
                raise ConflictError(
                    "status",
                    f"the run is {run.status.value}; only a queued, retrying or running run "
                    "can be cancelled",
                )
            cancelled = await connection.execute(
                sa.update(runs)
                .where(runs.c.id == run_id)
                .values(
                    status=RunStatus.CANCELLED.value,
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=self._now(),
                    updated_at=self._now(),
                    last_error=_CANCELLED_ERROR,
                )
                .returning(runs)
            )
            if run.status is RunStatus.RUNNING:
                await self._end_attempt(
                    connection,
                    run_id,
                    run.attempt,
                    status=AttemptStatus.CANCELLED,
                    error=_CANCELLED_ERROR,
                    result=None,
                )
            await write_audit(connection, audit, self._now(), target_kind="run", target_id=run_id)
            return run_from_row(cancelled.mappings().one())

    async def retry_run(
        self,
        run_id: uuid.UUID,
        *,
        queues: frozenset[str] | None = None,
        audit: AuditEntry | None = None,
    ) -> Run:
        async with self._transaction() as connection:
            row = await self._locked_run_row(connection, run_id, queues)
            status = RunStatus(row["status"])
            if status not in _RETRYABLE_RUN_STATUSES:
                raise ConflictError(
                    "status",
                    f"the run is {status.value}; only a dead or cancelled run can be retried",
                )
            retried = await connection.execute(
                sa.update(runs)
                .where(runs.c.id == run_id)
                .values(
                    status=RunStatus.QUEUED.value,
                    retry=_with_fresh_attempt_budget(row["retry"], row["attempt"]),
                    not_before=self._now(),
                    updated_at=self._now(),
                    finished_at=None,
                    published_at=None,
                    lease_owner=None,
                    lease_expires_at=None,
                )
                .returning(runs)
            )
            await write_audit(connection, audit, self._now(), target_kind="run", target_id=run_id)
            return run_from_row(retried.mappings().one())

    async def delete_run(
        self,
        run_id: uuid.UUID,
        *,
        queues: frozenset[str] | None = None,
        audit: AuditEntry | None = None,
    ) -> None:
        async with self._transaction() as connection:
            row = await self._locked_run_row(connection, run_id, queues)
            status = RunStatus(row["status"])
            if not status.is_final:
                raise ConflictError(
                    "status", f"the run is {status.value}; only a finished run can be deleted"
                )
            await connection.execute(sa.delete(attempts).where(attempts.c.run_id == run_id))
            await connection.execute(sa.delete(runs).where(runs.c.id == run_id))
            await write_audit(connection, audit, self._now(), target_kind="run", target_id=run_id)


def _with_fresh_attempt_budget(retry: dict[str, Any], attempt: int) -> dict[str, Any]:
    """``retry`` allowing as many attempts after ``attempt`` as the run first had."""
    original = int(retry.get(_ORIGINAL_MAX_ATTEMPTS, retry["max_attempts"]))
    return {**retry, "max_attempts": attempt + original, _ORIGINAL_MAX_ATTEMPTS: original}


def _runs_before_cursor(cursor: str) -> sa.ColumnElement[bool]:
    scheduled_text, run_id_text = decode_cursor(cursor, 2)
    try:
        scheduled_for = datetime.fromisoformat(str(scheduled_text))
    except ValueError as error:
        raise InvalidInputError("cursor", "not a cursor returned by this API") from error
    if scheduled_for.tzinfo is None:  # ours always carry an offset; a naive one cannot be bound
        raise InvalidInputError("cursor", "not a cursor returned by this API")
    run_id = uuid_from_cursor(run_id_text)
    return sa.or_(
        runs.c.scheduled_for < scheduled_for,
        sa.and_(runs.c.scheduled_for == scheduled_for, runs.c.id < run_id),
    )
