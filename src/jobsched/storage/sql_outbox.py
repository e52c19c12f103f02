"""The outbox in SQL: runs are committed unpublished, then handed to the broker.

A run's ``published_at`` stays empty until the broker has it; the sweep
(``publish_pending``) publishes what is due and unpublished, and marks it so only
once the broker has taken it. A broker that lost its messages has every waiting
run marked unpublished again (``mark_waiting_unpublished``).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence

import sqlalchemy as sa

from jobsched.core.models import Run
from jobsched.storage.rows import run_from_row
from jobsched.storage.schema import runs
from jobsched.storage.sql_base import CLAIMABLE_STATUS_VALUES, SQLStorageBase


class SQLOutbox(SQLStorageBase):
    """The outbox part of ``SQLStorage``."""

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
                runs.c.status.in_(CLAIMABLE_STATUS_VALUES),
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
            .where(runs.c.status.in_(CLAIMABLE_STATUS_VALUES), runs.c.published_at.is_not(None))
            .values(published_at=None)
        )
        async with self._transaction() as connection:
            return (await connection.execute(statement)).rowcount
