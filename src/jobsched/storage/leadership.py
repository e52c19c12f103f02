"""Leadership for housekeeping that one scheduler replica should do at a time.

On PostgreSQL the leader holds a session advisory lock on a connection of its
own. When the leader dies its connection closes and the server releases the lock
at once, so another replica takes over at its next check (seconds). On SQLite
there is only ever one process, which always leads.
"""

from __future__ import annotations

import logging
from typing import Protocol

import psycopg

from jobsched.storage.urls import DatabaseURL

logger = logging.getLogger("jobsched.scheduler")

# pg_advisory_lock keys are one bigint namespace per database; this one is ours.
HOUSEKEEPING_LOCK_KEY = 7413002


class Leadership(Protocol):
    async def is_leader(self) -> bool:
        """Whether this process leads now; acquires leadership if it is free."""

    async def close(self) -> None: ...


class AlwaysLeader:
    """A single-process deployment (SQLite): nobody to share the work with."""

    async def is_leader(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class AdvisoryLockLeadership:
    def __init__(self, database: DatabaseURL, lock_key: int = HOUSEKEEPING_LOCK_KEY) -> None:
        self._conninfo = database.sync_url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._lock_key = lock_key
        self._connection: psycopg.AsyncConnection[object] | None = None

    async def is_leader(self) -> bool:
        try:
            if self._connection is not None:
                # Still ours only while the session that took it is alive.
                await self._connection.execute("SELECT 1")
                return True
            connection = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            cursor = await connection.execute("SELECT pg_try_advisory_lock(%s)", [self._lock_key])
            row = await cursor.fetchone()
            if row is not None and row[0]:
                self._connection = connection
                logger.info("this scheduler now leads housekeeping")
                return True
            await connection.close()
            return False
        except (psycopg.Error, OSError) as error:
            logger.warning("housekeeping leadership check failed: %s", error)
            await self.close()
            return False

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close()
            except (psycopg.Error, OSError):
                logger.debug("closing the leadership connection failed", exc_info=True)


def leadership_for(database: DatabaseURL) -> Leadership:
    if database.dialect == "postgresql":
        return AdvisoryLockLeadership(database)
    return AlwaysLeader()
