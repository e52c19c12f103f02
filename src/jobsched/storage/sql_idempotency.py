"""Idempotency keys in SQL: claimed by a unique key, never by a check-then-insert.

The first request with a key inserts its row (``status_code`` null: in progress)
in a transaction of its own; a concurrent repeat's insert finds the key taken and
reads the row instead. The first request then stores its answer, or releases the
key if it failed, so that a repeat may try again.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from jobsched.storage.base import StoredAnswer
from jobsched.storage.schema import idempotency_keys
from jobsched.storage.sql_base import SQLStorageBase


def _this_key(scope: str, key: str) -> sa.ColumnElement[bool]:
    return sa.and_(idempotency_keys.c.scope == scope, idempotency_keys.c.key == key)


class SQLIdempotency(SQLStorageBase):
    """The idempotency part of ``SQLStorage``."""

    async def claim_idempotency_key(
        self, *, scope: str, key: str, request_hash: str, now: datetime, expires_at: datetime
    ) -> StoredAnswer | None:
        async with self._transaction() as connection:
            await connection.execute(
                sa.delete(idempotency_keys).where(idempotency_keys.c.expires_at <= now)
            )
            inserted = await connection.execute(
                self._insert(idempotency_keys)
                .values(
                    scope=scope,
                    key=key,
                    request_hash=request_hash,
                    created_at=now,
                    expires_at=expires_at,
                )
                .on_conflict_do_nothing(index_elements=["scope", "key"])
                .returning(idempotency_keys.c.key)
            )
            if inserted.first() is not None:
                return None
            row = (
                await connection.execute(
                    sa.select(
                        idempotency_keys.c.request_hash,
                        idempotency_keys.c.status_code,
                        idempotency_keys.c.response_body,
                        idempotency_keys.c.location,
                    ).where(_this_key(scope, key))
                )
            ).one_or_none()
        if row is None:  # released between the insert and the read: claim again
            return await self.claim_idempotency_key(
                scope=scope, key=key, request_hash=request_hash, now=now, expires_at=expires_at
            )
        return StoredAnswer(
            request_hash=row.request_hash,
            status_code=row.status_code,
            body=row.response_body,
            location=row.location,
        )

    async def store_idempotent_answer(
        self, *, scope: str, key: str, status_code: int, body: object, location: str | None
    ) -> None:
        async with self._transaction() as connection:
            await connection.execute(
                sa.update(idempotency_keys)
                .where(_this_key(scope, key))
                .values(status_code=status_code, response_body=body, location=location)
            )

    async def release_idempotency_key(self, *, scope: str, key: str) -> None:
        async with self._transaction() as connection:
            await connection.execute(
                sa.delete(idempotency_keys).where(
                    _this_key(scope, key), idempotency_keys.c.status_code.is_(None)
                )
            )
