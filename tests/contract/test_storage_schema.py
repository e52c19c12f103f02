"""Storage contract: health, the schema check, the clock, and migrations versus the schema."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from jobsched.core.errors import SchemaOutOfDateError, StorageError
from jobsched.storage.base import Storage
from jobsched.storage.database import SQLStorage
from jobsched.storage.migrate import MIGRATIONS_DIRECTORY
from jobsched.storage.schema import metadata
from tests.conftest import POSTGRES_ADMIN_URL
from tests.contract.storage_scenario import StorageScenario, job_spec


def _admin(sql: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(sql.encode())  # test-generated identifiers, no user input


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database that exists but was never migrated."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"jobsched_empty_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name}")
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --- health and the schema check ---------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql://postgres@127.0.0.1:1/jobsched", id="postgresql"),
        pytest.param("sqlite:///{tmp_path}", id="sqlite"),  # a directory is no database
    ],
)
async def test_ping_of_an_unreachable_database_raises_storage_error(
    url: str, tmp_path: Path
) -> None:
    threads_before = set(threading.enumerate())
    unreachable = SQLStorage.from_url(url.format(tmp_path=tmp_path))
    try:
        with pytest.raises(StorageError):
            await unreachable.ping()
    finally:
        await unreachable.close()
    # aiosqlite stops a failed connection's thread without awaiting it; let it finish
    # while this test's event loop is open, or it reports into a closed loop.
    for thread in set(threading.enumerate()) - threads_before:
        thread.join(timeout=10)
        assert not thread.is_alive()


async def test_a_migrated_database_answers_and_passes_the_schema_check(storage: Storage) -> None:
    await storage.ping()
    await storage.check_schema()


async def test_check_schema_refuses_a_database_never_migrated(empty_database_url: str) -> None:
    storage = SQLStorage.from_url(empty_database_url)
    try:
        with pytest.raises(SchemaOutOfDateError, match="jobsched migrate"):
            await storage.check_schema()
    finally:
        await storage.close()


async def test_check_schema_refuses_another_revision(
    storage: Storage, scenario: StorageScenario
) -> None:
    with scenario.sql.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '0000'"))

    with pytest.raises(SchemaOutOfDateError, match="0000"):
        await storage.check_schema()


# --- the clock -----------------------------------------------------------------------


async def test_now_is_the_current_time_in_utc(storage: Storage) -> None:
    before = datetime.now(UTC)

    now = await storage.now()

    after = datetime.now(UTC)
    assert now.tzinfo is UTC
    assert before - timedelta(seconds=5) <= now <= after + timedelta(seconds=5)


async def test_times_are_utc_whatever_the_session_timezone(postgres_url: str) -> None:
    """A server or role configured for local time must not leak offsets into the records."""
    _admin(f"ALTER DATABASE {postgres_url.rsplit('/', 1)[1]} SET timezone TO 'America/New_York'")
    storage = SQLStorage.from_url(postgres_url)
    try:
        now = await storage.now()
        job = await storage.create_job(job_spec(), next_run_at=now + timedelta(days=1), now=now)
        run = await storage.trigger_job(job.id, published=True)
        (claimed,) = await storage.claim_runs([run.id], "worker-1", 30.0)
    finally:
        await storage.close()

    assert now.tzinfo is UTC
    for value in (run.scheduled_for, run.published_at, claimed.lease_expires_at):
        assert value is not None
        assert value.tzinfo is UTC


# --- migrations --------------------------------------------------------------------------


def _schema_differences(connection: sa.Connection, target: sa.MetaData) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, target))


def test_migrations_create_exactly_the_declared_schema(scenario: StorageScenario) -> None:
    with scenario.sql.connect() as connection:
        assert _schema_differences(connection, metadata) == []


def test_the_schema_comparison_sees_differences(scenario: StorageScenario) -> None:
    """Guards the test above against comparing nothing."""
    drifted = sa.MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["jobs"].append_column(sa.Column("owner", sa.String(50), nullable=True))
    sa.Index("ix_runs_job_type", drifted.tables["runs"].c.job_type)

    with scenario.sql.connect() as connection:
        differences = _schema_differences(connection, drifted)

    assert len(differences) == 2


async def test_rebuilding_the_runs_table_keeps_its_rows_attempts_and_indexes(
    storage: Storage, scenario: StorageScenario
) -> None:
    """Revision 0006 rebuilds ``runs`` on SQLite to drop a constraint; nothing may go with it.

    ``attempts`` cascades from ``runs``: a rebuild under enforced foreign keys would empty it.
    """
    run = await scenario.claimed_run()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))

    with scenario.sql.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
        command.upgrade(config, "head")

    assert await storage.get_run(run.id) == run
    assert scenario.count_attempts(run.id) == 1
    with scenario.sql.connect() as connection:
        assert _schema_differences(connection, metadata) == []
