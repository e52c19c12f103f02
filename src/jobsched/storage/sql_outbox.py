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

from jobsched.core.models import OutboxRun
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

    async def count_unpublished(self) -> int:
        async with self._single_statement() as connection:
            backlog = await connection.scalar(
                sa.select(sa.func.count())
                .select_from(runs)
                .where(
                    runs.c.published_at.is_(None),
                    runs.c.status.in_(CLAIMABLE_STATUS_VALUES),
                    runs.c.not_before <= self._now(),
                )
            )
        return int(backlog or 0)

    async def publish_pending(
        self, limit: int, publish: Callable[[list[OutboxRun]], Awaitable[None]]
    ) -> int:
        due = (
            sa.select(runs.c.id)
            .where(
                runs.c.published_at.is_(None),
                runs.c.status.in_(CLAIMABLE_STATUS_VALUES),
                runs.c.not_before <= self._now(),
            )
            .order_by(runs.c.not_before)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        # One statement locks the due runs (SKIP LOCKED: replicas share the sweep),
        # marks them and reads back only what publishing needs. The mark commits only
        # once ``publish`` returned: until then the rows stay locked, and if it raises,
        # the transaction rolls back and the runs stay unpublished.
        marking = (
            sa.update(runs)
            .where(runs.c.id.in_(due))
            .values(published_at=self._now())
            .returning(
                runs.c.id, runs.c.queue, runs.c.priority, runs.c.scheduled_for, runs.c.not_before
            )
        )
        async with self._transaction() as connection:
            # RETURNING has no order: publish the longest-waiting first, as selected.
            rows = sorted(
                (await connection.execute(marking)).all(),
                key=lambda row: (row.not_before, row.id),
            )
            if not rows:
                return 0
            await publish(
                [OutboxRun(row.id, row.queue, row.priority, row.scheduled_for) for row in rows]
            )
        return len(rows)

    async def mark_waiting_unpublished(self) -> int:
        statement = (
            sa.update(runs)
            .where(runs.c.status.in_(CLAIMABLE_STATUS_VALUES), runs.c.published_at.is_not(None))
            .values(published_at=None)
        )
        async with self._transaction() as connection:
            return (await connection.execute(statement)).rowcount
