"""``SQLStorage``: the storage contract on PostgreSQL (psycopg 3) and SQLite (aiosqlite).

Statements are SQLAlchemy Core expressions, so one body of SQL serves both
databases: ``FOR UPDATE SKIP LOCKED`` renders on PostgreSQL and is dropped on
SQLite, where a single pooled connection makes the process the only writer.
The two places the dialects truly differ (the clock and upserts) are the
helpers ``_now`` / ``_now_plus`` and ``_insert``.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from jobsched.core.concurrency import ActiveRun, apply_concurrency_policy
from jobsched.core.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    SchemaOutOfDateError,
    StorageError,
)
from jobsched.core.ids import new_id
from jobsched.core.models import (
    ACTIVE_RUN_STATUSES,
    CLAIMABLE_RUN_STATUSES,
    FINAL_RUN_STATUSES,
    Attempt,
    AttemptStatus,
    ConcurrencyPolicy,
    Job,
    JobSpec,
    JobStatus,
    Page,
    Run,
    RunStatus,
    RunTrigger,
)
from jobsched.core.planning import FirePlan
from jobsched.storage import postgres_batches
from jobsched.storage.base import (
    AttemptOutcome,
    JobFilter,
    RescueReport,
    WorkerInfo,
    WorkerRecord,
)
from jobsched.storage.migrate import current_revision, head_revision
from jobsched.storage.pagination import decode_cursor, encode_cursor
from jobsched.storage.rows import (
    attempt_from_row,
    job_from_row,
    job_values,
    run_from_row,
    worker_from_row,
    worker_info_values,
)
from jobsched.storage.schema import (
    FIRED_BY_SCHEDULE,
    UTCDateTime,
    attempts,
    jobs,
    runs,
    workers,
)
from jobsched.storage.urls import DatabaseURL, parse_database_url

_CLAIMABLE = [status.value for status in CLAIMABLE_RUN_STATUSES]
_ACTIVE = [status.value for status in ACTIVE_RUN_STATUSES]
_FINAL = [status.value for status in FINAL_RUN_STATUSES]
_REPLACED_ERROR = "cancelled: replaced by a newer run (concurrency_policy: replace)"
_LOST_LEASE_ERROR = "lease expired: the worker stopped renewing it (killed, hung or cut off)"
_CANCELLED_ERROR = "cancelled by request"
_RETRYABLE_RUN_STATUSES = frozenset({RunStatus.DEAD, RunStatus.CANCELLED})
# Kept in a run's retry policy JSON by retry_run: the max_attempts the run was created
# with, so each manual retry grants that many attempts again (not twice as many).
_ORIGINAL_MAX_ATTEMPTS = "original_max_attempts"
# A job's updated_at is its version (the API's cache keeps the newest one it is
# shown), so a write never moves it back: a writer's `now` is read before it takes
# the row lock, and another writer may have committed a later one meanwhile.
_VERSION_STEP = timedelta(microseconds=1)


# A pooled PostgreSQL connection idle this long is pinged before it is used again.
_PING_AFTER_IDLE_SECONDS = 1.0
_CHECKED_IN_AT = "jobsched_checked_in_at"


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA foreign_keys=ON",
        "PRAGMA busy_timeout=10000",
    ):
        cursor.execute(pragma)
    cursor.close()


def create_engine_for(database: DatabaseURL, *, pool_size: int = 10) -> AsyncEngine:
    if database.dialect == "sqlite":
        path = database.sqlite_path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # One connection: SQLite has one writer, and queueing in the pool is cheaper
        # than "database is locked" retries.
        engine = create_async_engine(database.async_url, pool_size=1, max_overflow=0)
        sa.event.listen(engine.sync_engine, "connect", _configure_sqlite)
        return engine
    engine = create_async_engine(database.async_url, pool_size=pool_size, max_overflow=pool_size)
    _ping_connections_idle_since(engine, _PING_AFTER_IDLE_SECONDS)
    return engine


def _ping_connections_idle_since(engine: AsyncEngine, idle_seconds: float) -> None:
    """Ping a pooled connection at checkout only if it sat idle ``idle_seconds`` or more.

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout: a round trip added to
    every transaction of the worker's hot path. A connection used moments ago is
    alive unless the server went away within that moment, and then the statement
    fails as any statement failing mid-outage does (``StorageError``), and the pool
    drops its connections. A dead connection is replaced, as with pre-ping.
    """
    dialect = engine.dialect

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        last_used = record.info.get(_CHECKED_IN_AT)
        if last_used is None or time.monotonic() - last_used < idle_seconds:
            return  # just connected, or used moments ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise sa.exc.DisconnectionError(str(error)) from error

    sa.event.listen(engine.sync_engine, "checkin", checked_in)
    sa.event.listen(engine.sync_engine, "checkout", checked_out)


class SQLStorage:
    """The storage contract (``storage.base.Storage``) over one SQLAlchemy async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # For work that is one statement (``_single_statement``). Shares the engine's pool.
        self._autocommit_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.dialect = engine.dialect.name

    @classmethod
    def from_url(cls, url: str | DatabaseURL, *, pool_size: int = 10) -> SQLStorage:
        database = parse_database_url(url) if isinstance(url, str) else url
        return cls(create_engine_for(database, pool_size=pool_size))

    async def close(self) -> None:
        await self._engine.dispose()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engine.begin() as connection:
                yield connection
        except (sa.exc.OperationalError, sa.exc.InterfaceError, OSError) as error:
            raise StorageError(f"database unavailable: {error}") from error

    @asynccontextmanager
    async def _single_statement(self) -> AsyncIterator[AsyncConnection]:
        """A connection in autocommit, for work that is one statement.

        One statement is atomic by itself; an explicit transaction around it would
        only add BEGIN and COMMIT round trips (reads included: under READ COMMITTED
        a transaction gives each statement its own snapshot anyway).
        """
        try:
            async with self._autocommit_engine.connect() as connection:
                yield connection
        except (sa.exc.OperationalError, sa.exc.InterfaceError, OSError) as error:
            raise StorageError(f"database unavailable: {error}") from error

    # --- dialect differences ----------------------------------------------------

    def _now(self) -> sa.ColumnElement[datetime]:
        if self.dialect == "postgresql":
            return sa.func.now(type_=UTCDateTime())
        return sa.literal(datetime.now(UTC), UTCDateTime())

    def _now_plus(self, seconds: float) -> sa.ColumnElement[datetime]:
        if self.dialect == "postgresql":
            interval = sa.func.make_interval(0, 0, 0, 0, 0, 0, sa.literal(seconds, sa.Float()))
            return sa.type_coerce(sa.func.now() + interval, UTCDateTime())
        return sa.literal(datetime.now(UTC) + timedelta(seconds=seconds), UTCDateTime())

    def _insert(self, table: sa.Table) -> Any:
        dialect_module: Any = postgresql if self.dialect == "postgresql" else sqlite
        return dialect_module.insert(table)

    # --- health ----------------------------------------------------------------

    async def ping(self) -> None:
        async with self._transaction() as connection:
            await connection.execute(sa.text("SELECT 1"))

    async def check_schema(self) -> None:
        async with self._transaction() as connection:
            revision = await connection.run_sync(current_revision)
        head = head_revision()
        if revision != head:
            raise SchemaOutOfDateError(
                f"database schema is at revision {revision or 'none'}, this release needs "
                f"{head}: run `jobsched migrate`"
            )

    async def now(self) -> datetime:
        if self.dialect != "postgresql":
            return datetime.now(UTC)
        async with self._single_statement() as connection:
            value = (await connection.execute(sa.select(self._now()))).scalar_one()
        assert isinstance(value, datetime)
        return value

    # --- jobs ------------------------------------------------------------------

    async def create_job(
        self, spec: JobSpec, *, next_run_at: datetime | None, now: datetime
    ) -> Job:
        job = _new_job(spec, next_run_at, now)
        async with self._writing_name(job.name), self._single_statement() as connection:
            await connection.execute(sa.insert(jobs).values(job_values(job)))
        return job

    async def create_jobs(
        self, planned: Sequence[tuple[JobSpec, datetime | None]], *, now: datetime
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
        query = sa.select(jobs).order_by(jobs.c.id).limit(limit + 1)
        if job_filter.type is not None:
            query = query.where(jobs.c.type == job_filter.type)
        if job_filter.status is not None:
            query = query.where(jobs.c.status == job_filter.status.value)
        if job_filter.queue is not None:
            query = query.where(jobs.c.queue == job_filter.queue)
        if cursor is not None:
            (after_id,) = decode_cursor(cursor, 1)
            query = query.where(jobs.c.id > _uuid_from_cursor(after_id))
        async with self._single_statement() as connection:
            rows = (await connection.execute(query)).mappings().all()
        items = [job_from_row(row) for row in rows[:limit]]
        next_cursor = encode_cursor(str(items[-1].id)) if len(rows) > limit else None
        return Page(items=items, next_cursor=next_cursor)

    async def update_job(self, job_id: uuid.UUID, edit: Callable[[Job], Job]) -> Job:
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
            if row is None:
                raise NotFoundError("job", job_id)
            current = job_from_row(row)
            updated = edit(current)
            if updated != current:
                later = _later_version(current.updated_at, updated.updated_at)
                updated = dataclasses.replace(updated, updated_at=later)
            values = job_values(updated)
            del values["id"], values["created_at"]
            async with self._writing_name(updated.name):
                await connection.execute(sa.update(jobs).where(jobs.c.id == job_id).values(values))
        return updated

    async def delete_job(self, job_id: uuid.UUID) -> None:
        async with self._transaction() as connection:
            result = await connection.execute(
                sa.delete(jobs).where(jobs.c.id == job_id).returning(jobs.c.id)
            )
            if result.first() is None:
                raise NotFoundError("job", job_id)

    async def trigger_job(self, job_id: uuid.UUID, *, published: bool) -> Run:
        # One INSERT ... SELECT copying the job's fields, in autocommit: a trigger is on
        # the path from a request to a run's start, where each round trip shows. The
        # values are _new_run_values' for a manual run, as SQL over the job's row. No
        # ON CONFLICT: manual runs are outside uq_runs_fire_time, so a trigger at the
        # instant of another run of the job still makes a run of its own.
        now = self._now()
        values: dict[str, Any] = {
            "id": sa.literal(new_id(), sa.Uuid()),
            "job_id": jobs.c.id,
            "job_type": jobs.c.type,
            "queue": jobs.c.queue,
            "priority": jobs.c.priority,
            "payload": jobs.c.payload,
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
        statement = sa.insert(runs).from_select(list(values), copied).returning(runs)
        async with self._single_statement() as connection:
            row = (await connection.execute(statement)).mappings().first()
        if row is None:
            raise NotFoundError("job", job_id)
        return run_from_row(row)

    # --- runs ------------------------------------------------------------------

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
    ) -> Page[Run]:
        query = (
            sa.select(runs).order_by(runs.c.scheduled_for.desc(), runs.c.id.desc()).limit(limit + 1)
        )
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

    # --- scheduler -------------------------------------------------------------

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
            return await self._insert_runs(connection, new_runs)

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

    async def mark_published(self, run_ids: Sequence[uuid.UUID]) -> None:
        if not run_ids:
            return
        async with self._transaction() as connection:
            await connection.execute(
                sa.update(runs)
                .where(runs.c.id.in_(run_ids), runs.c.published_at.is_(None))
                .values(published_at=self._now())
            )

    async def publish_pending(
        self, limit: int, publish: Callable[[list[Run]], Awaitable[None]]
    ) -> int:
        pending = (
            sa.select(runs)
            .where(
                runs.c.published_at.is_(None),
                runs.c.status.in_(_CLAIMABLE),
                runs.c.not_before <= self._now(),
            )
            .order_by(runs.c.not_before)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self._transaction() as connection:
            batch = [run_from_row(row) for row in (await connection.execute(pending)).mappings()]
            if not batch:
                return 0
            # Inside the transaction: the rows stay locked while the broker takes them,
            # so replicas do not publish the same runs; if publish raises, nothing is marked.
            await publish(batch)
            await connection.execute(
                sa.update(runs)
                .where(runs.c.id.in_([run.id for run in batch]))
                .values(published_at=self._now())
            )
        return len(batch)

    async def mark_waiting_unpublished(self) -> int:
        statement = (
            sa.update(runs)
            .where(runs.c.status.in_(_CLAIMABLE), runs.c.published_at.is_not(None))
            .values(published_at=None)
        )
        async with self._transaction() as connection:
            return (await connection.execute(statement)).rowcount

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

    async def ready_run_counts(self) -> dict[str, int]:
        query = (
            sa.select(runs.c.queue, sa.func.count())
            .where(runs.c.status.in_(_CLAIMABLE))
            .group_by(runs.c.queue)
        )
        async with self._single_statement() as connection:
            rows = (await connection.execute(query)).all()
        return {queue: count for queue, count in rows}

    async def rescue_expired_leases(self, limit: int) -> RescueReport:
        expired = (
            sa.select(runs)
            .where(runs.c.status == RunStatus.RUNNING.value, runs.c.lease_expires_at < self._now())
            .order_by(runs.c.lease_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self._transaction() as connection:
            rows = (await connection.execute(expired)).mappings().all()
            report = RescueReport()
            for row in rows:
                run = run_from_row(row)
                out_of_attempts = run.attempt >= run.retry.max_attempts
                status = RunStatus.DEAD if out_of_attempts else RunStatus.RETRYING
                rescued = await connection.execute(
                    sa.update(runs)
                    .where(runs.c.id == run.id)
                    .values(
                        status=status.value,
                        lease_owner=None,
                        lease_expires_at=None,
                        not_before=self._now(),
                        updated_at=self._now(),
                        finished_at=self._now() if out_of_attempts else None,
                        last_error=_LOST_LEASE_ERROR,
                        # Back through the outbox: the broker's delivery of it is spent.
                        published_at=None,
                    )
                    .returning(runs)
                )
                await self._end_attempt(
                    connection,
                    run.id,
                    run.attempt,
                    status=AttemptStatus.LOST,
                    error=_LOST_LEASE_ERROR,
                    result=None,
                )
                bucket = report.dead if out_of_attempts else report.requeued
                bucket.append(run_from_row(rescued.mappings().one()))
            return report

    # --- workers ---------------------------------------------------------------

    async def claim_ready_runs(
        self, queues: Sequence[str], limit: int, worker_id: str, lease_seconds: float
    ) -> list[Run]:
        if self.dialect == "postgresql":
            async with self._single_statement() as connection:
                return _by_priority(
                    await postgres_batches.claim_ready_runs(
                        connection, queues, limit, worker_id, lease_seconds
                    )
                )
        ready = (
            sa.select(runs.c.id)
            .where(
                runs.c.status.in_(_CLAIMABLE),
                runs.c.queue.in_(queues),
                runs.c.not_before <= self._now(),
            )
            .order_by(runs.c.priority.desc(), runs.c.not_before, runs.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return await self._claim(runs.c.id.in_(ready), worker_id, lease_seconds)

    async def claim_runs(
        self, run_ids: Sequence[uuid.UUID], worker_id: str, lease_seconds: float
    ) -> list[Run]:
        if not run_ids:
            return []
        if self.dialect == "postgresql":
            async with self._single_statement() as connection:
                return _by_priority(
                    await postgres_batches.claim_runs(connection, run_ids, worker_id, lease_seconds)
                )
        return await self._claim(
            sa.and_(
                runs.c.id.in_(run_ids),
                runs.c.status.in_(_CLAIMABLE),
                # A stale duplicate delivery must not start a retry before its backoff ends.
                runs.c.not_before <= self._now(),
            ),
            worker_id,
            lease_seconds,
        )

    async def _claim(
        self, condition: sa.ColumnElement[bool], worker_id: str, lease_seconds: float
    ) -> list[Run]:
        claim = (
            sa.update(runs)
            .where(condition)
            .values(
                status=RunStatus.RUNNING.value,
                attempt=runs.c.attempt + 1,
                lease_owner=worker_id,
                lease_expires_at=self._now_plus(lease_seconds),
                started_at=sa.func.coalesce(runs.c.started_at, self._now()),
                updated_at=self._now(),
            )
            .returning(runs)
        )
        async with self._transaction() as connection:
            claimed = [run_from_row(row) for row in (await connection.execute(claim)).mappings()]
            if claimed:
                await connection.execute(
                    sa.insert(attempts),
                    [
                        {
                            "id": new_id(),
                            "run_id": run.id,
                            "attempt": run.attempt,
                            "status": AttemptStatus.RUNNING.value,
                            "worker_id": worker_id,
                            "started_at": run.updated_at,
                        }
                        for run in claimed
                    ],
                )
        return _by_priority(claimed)

    async def renew_leases(
        self, worker_id: str, held: Sequence[tuple[uuid.UUID, int]], lease_seconds: float
    ) -> set[uuid.UUID]:
        if not held:
            return set()
        # Rows are locked in id order, as finish_attempts locks them: the same worker's
        # outcome writer updates some of these rows at this very moment, and two
        # transactions locking rows in different orders deadlock.
        still_held = (
            sa.select(runs.c.id)
            .where(
                # Fenced in SQL: a stale attempt's heartbeat must not extend the current lease.
                sa.tuple_(runs.c.id, runs.c.attempt).in_(list(held)),
                runs.c.lease_owner == worker_id,
                runs.c.status == RunStatus.RUNNING.value,
            )
            .order_by(runs.c.id)
            .with_for_update()
        )
        renew = (
            sa.update(runs)
            .where(runs.c.id.in_(still_held))
            .values(lease_expires_at=self._now_plus(lease_seconds))
            .returning(runs.c.id)
        )
        async with self._transaction() as connection:
            renewed = (await connection.execute(renew)).scalars().all()
        return set(renewed)

    async def finish_attempts(self, outcomes: Sequence[AttemptOutcome]) -> list[bool]:
        if not outcomes:
            return []
        if self.dialect == "postgresql":
            async with self._single_statement() as connection:
                return await postgres_batches.finish_attempts(connection, outcomes)
        accepted: dict[int, bool] = {}
        # In run-id order, the order renew_leases locks rows in, so the two never deadlock.
        in_lock_order = sorted(range(len(outcomes)), key=lambda index: outcomes[index].run_id)
        async with self._transaction() as connection:
            for index in in_lock_order:
                accepted[index] = await self._finish_attempt(connection, outcomes[index])
        return [accepted[index] for index in range(len(outcomes))]

    async def _finish_attempt(self, connection: AsyncConnection, outcome: AttemptOutcome) -> bool:
        final = outcome.run_status.is_final
        values: dict[str, Any] = {
            "status": outcome.run_status.value,
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": self._now(),
            "finished_at": self._now() if final else None,
            "last_error": outcome.error,
            "result": outcome.result,
        }
        if outcome.retry_at is not None:
            values["not_before"] = outcome.retry_at
            # The outbox publishes the retry once ``not_before`` has come.
            values["published_at"] = None
        fenced = (
            sa.update(runs)
            .where(
                runs.c.id == outcome.run_id,
                runs.c.attempt == outcome.attempt,
                runs.c.lease_owner == outcome.worker_id,
                runs.c.status == RunStatus.RUNNING.value,
            )
            .values(values)
        )
        if (await connection.execute(fenced)).rowcount != 1:
            return False
        await self._end_attempt(
            connection,
            outcome.run_id,
            outcome.attempt,
            status=outcome.attempt_status,
            error=outcome.error,
            result=outcome.result,
        )
        return True

    async def _end_attempt(
        self,
        connection: AsyncConnection,
        run_id: uuid.UUID,
        attempt: int,
        *,
        status: AttemptStatus,
        error: str | None,
        result: dict[str, Any] | None,
    ) -> None:
        await connection.execute(
            sa.update(attempts)
            .where(attempts.c.run_id == run_id, attempts.c.attempt == attempt)
            .values(status=status.value, finished_at=self._now(), error=error, result=result)
        )

    async def release_runs(
        self, worker_id: str, held: Sequence[tuple[uuid.UUID, int]]
    ) -> list[Run]:
        if not held:
            return []
        # Locked in id order, as renew_leases and finish_attempts lock them (no deadlock).
        still_held = (
            sa.select(runs.c.id)
            .where(
                sa.tuple_(runs.c.id, runs.c.attempt).in_(list(held)),
                runs.c.lease_owner == worker_id,
                runs.c.status == RunStatus.RUNNING.value,
            )
            .order_by(runs.c.id)
            .with_for_update()
        )
        counted_before = runs.c.attempt > 1
        release = (
            sa.update(runs)
            .where(runs.c.id.in_(still_held))
            .values(
                status=sa.case(
                    (counted_before, RunStatus.RETRYING.value), else_=RunStatus.QUEUED.value
                ),
                attempt=runs.c.attempt - 1,
                # started_at is the first counted attempt's start: none is left if this was it.
                started_at=sa.case((counted_before, runs.c.started_at), else_=sa.null()),
                lease_owner=None,
                lease_expires_at=None,
                not_before=self._now(),
                updated_at=self._now(),
                published_at=None,
                last_error=f"handed back by worker {worker_id} at shutdown (attempt not counted)",
            )
            .returning(runs)
        )
        async with self._transaction() as connection:
            released = [run_from_row(row) for row in (await connection.execute(release)).mappings()]
            if released:
                uncounted = [(run.id, run.attempt + 1) for run in released]
                await connection.execute(
                    sa.delete(attempts).where(
                        sa.tuple_(attempts.c.run_id, attempts.c.attempt).in_(uncounted)
                    )
                )
        return released

    # --- operators ---------------------------------------------------------------

    async def _locked_run_row(
        self, connection: AsyncConnection, run_id: uuid.UUID
    ) -> sa.RowMapping:
        query = sa.select(runs).where(runs.c.id == run_id).with_for_update()
        row = (await connection.execute(query)).mappings().first()
        if row is None:
            raise NotFoundError("run", run_id)
        return row

    async def cancel_run(self, run_id: uuid.UUID) -> Run:
        async with self._transaction() as connection:
            run = run_from_row(await self._locked_run_row(connection, run_id))
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
            return run_from_row(cancelled.mappings().one())

    async def retry_run(self, run_id: uuid.UUID) -> Run:
        async with self._transaction() as connection:
            row = await self._locked_run_row(connection, run_id)
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
            return run_from_row(retried.mappings().one())

    # --- worker registry -----------------------------------------------------------

    async def register_worker(self, info: WorkerInfo) -> WorkerRecord:
        now = self._now()  # one instant for both (on SQLite each call reads the clock)
        values = {
            **worker_info_values(info),
            "started_at": now,
            "heartbeat_at": now,
            "stopped_at": None,
            "runs_in_progress": 0,
        }
        insert = self._insert(workers).values(values)
        # A restarted worker that keeps its id (a configured worker.id) starts afresh.
        upsert = insert.on_conflict_do_update(
            index_elements=["id"],
            set_={name: insert.excluded[name] for name in values if name != "id"},
        ).returning(workers)
        async with self._transaction() as connection:
            row = (await connection.execute(upsert)).mappings().one()
        return worker_from_row(row)

    async def worker_heartbeat(self, worker_id: str, runs_in_progress: int) -> bool:
        statement = (
            sa.update(workers)
            .where(workers.c.id == worker_id)
            .values(heartbeat_at=self._now(), runs_in_progress=runs_in_progress)
        )
        async with self._transaction() as connection:
            return (await connection.execute(statement)).rowcount == 1

    async def deregister_worker(self, worker_id: str) -> None:
        statement = (
            sa.update(workers)
            .where(workers.c.id == worker_id)
            .values(stopped_at=self._now(), runs_in_progress=0)
        )
        async with self._transaction() as connection:
            await connection.execute(statement)

    async def list_workers(self) -> list[WorkerRecord]:
        query = sa.select(workers).order_by(workers.c.started_at.desc(), workers.c.id)
        async with self._single_statement() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [worker_from_row(row) for row in rows]

    async def prune_workers(self, last_seen_before: datetime) -> int:
        last_seen = sa.func.coalesce(workers.c.stopped_at, workers.c.heartbeat_at)
        statement = sa.delete(workers).where(last_seen < last_seen_before)
        async with self._transaction() as connection:
            return (await connection.execute(statement)).rowcount


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


def _by_priority(claimed: list[Run]) -> list[Run]:
    """Claimed runs in the order to start them: highest priority, then longest waiting."""
    return sorted(claimed, key=lambda run: (-run.priority, run.not_before))


def _with_fresh_attempt_budget(retry: dict[str, Any], attempt: int) -> dict[str, Any]:
    """``retry`` allowing as many attempts after ``attempt`` as the run first had."""
    original = int(retry.get(_ORIGINAL_MAX_ATTEMPTS, retry["max_attempts"]))
    return {**retry, "max_attempts": attempt + original, _ORIGINAL_MAX_ATTEMPTS: original}


def _later_version(previous: datetime, proposed: datetime) -> datetime:
    """``proposed``, or just after ``previous`` if it is not later: versions only grow."""
    return max(proposed, previous + _VERSION_STEP)


def _advanced_job_values(job: Job, plan: FirePlan, now: datetime) -> dict[str, Any]:
    status = JobStatus.ACTIVE if plan.next_run_at is not None else JobStatus.COMPLETED
    return {
        "job_id": job.id,
        "new_next_run_at": plan.next_run_at,
        "new_status": status.value,
        "new_last_fired_at": max(plan.fire_times, default=job.last_fired_at),
        "new_updated_at": _later_version(job.updated_at, now),
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


def _uuid_from_cursor(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as error:
        raise InvalidInputError("cursor", "not a cursor returned by this API") from error


def _runs_before_cursor(cursor: str) -> sa.ColumnElement[bool]:
    scheduled_text, run_id_text = decode_cursor(cursor, 2)
    try:
        scheduled_for = datetime.fromisoformat(str(scheduled_text))
    except ValueError as error:
        raise InvalidInputError("cursor", "not a cursor returned by this API") from error
    if scheduled_for.tzinfo is None:  # ours always carry an offset; a naive one cannot be bound
        raise InvalidInputError("cursor", "not a cursor returned by this API")
    run_id = _uuid_from_cursor(run_id_text)
    return sa.or_(
        runs.c.scheduled_for < scheduled_for,
        sa.and_(runs.c.scheduled_for == scheduled_for, runs.c.id < run_id),
    )
