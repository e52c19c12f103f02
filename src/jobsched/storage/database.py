"""``SQLStorage``: the storage contract on PostgreSQL (psycopg 3) and SQLite (aiosqlite).

Statements are SQLAlchemy Core expressions, so one body of SQL serves both
databases: ``FOR UPDATE SKIP LOCKED`` renders on PostgreSQL and is dropped on
SQLite, where a single pooled connection makes the process the only writer.
The two places the dialects truly differ (the clock and upserts) are the
helpers ``_now`` / ``_now_plus`` and ``_insert``.

This module makes the engine and holds the connection and dialect helpers; the
statements live in one mixin per concern (see ``storage.sql_base``), which
``SQLStorage`` composes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from jobsched.core.errors import SchemaOutOfDateError, StorageError
from jobsched.storage.migrate import current_revision, head_revision
from jobsched.storage.schema import UTCDateTime
from jobsched.storage.sql_access import SQLAccess
from jobsched.storage.sql_dashboard import SQLDashboard
from jobsched.storage.sql_firing import SQLFiring
from jobsched.storage.sql_idempotency import SQLIdempotency
from jobsched.storage.sql_jobs import SQLJobs
from jobsched.storage.sql_leases import SQLLeases
from jobsched.storage.sql_outbox import SQLOutbox
from jobsched.storage.sql_runs import SQLRuns
from jobsched.storage.sql_webhooks import SQLWebhooks
from jobsched.storage.sql_workers import SQLWorkerRegistry
from jobsched.storage.urls import DatabaseURL, parse_database_url

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


class SQLStorage(
    SQLJobs,
    SQLFiring,
    SQLOutbox,
    SQLRuns,
    SQLLeases,
    SQLWorkerRegistry,
    SQLAccess,
    SQLDashboard,
    SQLIdempotency,
    SQLWebhooks,
):
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
        name = self._engine.url.database if self.dialect == "sqlite" else None
        path = Path(name) if name and name != ":memory:" else None
        if path is not None and not path.exists():
            # Connecting would create an empty file that later looks like a database.
            raise SchemaOutOfDateError(f"no database at {path}: run `jobsched migrate`")
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
