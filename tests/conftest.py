"""Fixtures shared by the whole suite: real PostgreSQL databases and SQLite files per test.

Every test that touches PostgreSQL gets a database of its own, cloned from a
migrated template made once per session, and dropped afterwards. A service that
does not answer fails the run with a clear message: ``make test`` starts the
local services first, and nothing here ever skips for a missing service.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from jobsched.storage.database import SQLStorage
from jobsched.storage.migrate import upgrade_to_head
from jobsched.storage.urls import parse_database_url

POSTGRES_ADMIN_URL = os.environ.get(
    "JOBSCHED_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SERVICES = {
    "PostgreSQL": ("127.0.0.1", 5432),
    "Redis": ("127.0.0.1", 6379),
    "RabbitMQ": ("127.0.0.1", 5672),
}


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [
        f"{name} ({host}:{port})"
        for name, (host, port) in SERVICES.items()
        if not _answers(host, port)
    ]
    if missing:
        pytest.exit(
            "services not answering: "
            + ", ".join(missing)
            + " — run `make services` (or `make test`, which starts them)",
            returncode=3,
        )


def _postgres_url(database: str) -> str:
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


def _admin(sql: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(sql)  # test-generated identifiers


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    name = f"jobsched_template_{os.getpid()}"
    _admin(f"DROP DATABASE IF EXISTS {name}")
    _admin(f"CREATE DATABASE {name}")
    upgrade_to_head(parse_database_url(_postgres_url(name)))
    yield name
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    """A migrated PostgreSQL database of this test's own."""
    name = f"jobsched_test_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name} TEMPLATE {postgres_template}")
    yield _postgres_url(name)
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite file of this test's own."""
    url = f"sqlite:///{tmp_path / 'jobsched.db'}"
    upgrade_to_head(parse_database_url(url))
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once on SQLite and once on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    value = request.getfixturevalue(fixture)
    assert isinstance(value, str)
    return value


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[SQLStorage]:
    store = SQLStorage.from_url(database_url)
    yield store
    await store.close()


@pytest.fixture
def sql(database_url: str) -> Iterator[sa.Engine]:
    """A plain synchronous engine on the same database as ``storage``: to read rows, or
    to change them behind the code under test's back (age a heartbeat, edit a job)."""
    engine = sa.create_engine(parse_database_url(database_url).sync_url)
    yield engine
    engine.dispose()
