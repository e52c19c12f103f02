"""Pooled PostgreSQL connections: pinged after idling, not before every transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest

from jobsched.core.errors import StorageError
from jobsched.storage.database import SQLStorage

pytestmark = pytest.mark.postgres


@pytest.fixture
async def storage(postgres_url: str) -> AsyncIterator[SQLStorage]:
    # One pooled connection, so that every call below uses the one terminated.
    store = SQLStorage.from_url(postgres_url, pool_size=1)
    yield store
    await store.close()


async def backend_pid(storage: SQLStorage) -> int:
    async with storage._transaction() as connection:
        pid = (await connection.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
    assert isinstance(pid, int)
    return pid


def terminate(postgres_url: str, pid: int) -> None:
    """What a server restart or a cut connection does to a pooled connection."""
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


async def test_a_connection_killed_while_idle_is_replaced_without_an_error(
    storage: SQLStorage, postgres_url: str
) -> None:
    killed = await backend_pid(storage)
    terminate(postgres_url, killed)
    await asyncio.sleep(1.2)  # idle past the ping threshold

    assert await backend_pid(storage) != killed


async def test_a_connection_killed_moments_after_use_fails_one_call_then_recovers(
    storage: SQLStorage, postgres_url: str
) -> None:
    killed = await backend_pid(storage)
    terminate(postgres_url, killed)

    # Not pinged (used moments ago): the call fails as any call mid-outage does ...
    with pytest.raises(StorageError):
        await backend_pid(storage)
    # ... and the pool has dropped the dead connection.
    assert await backend_pid(storage) != killed
