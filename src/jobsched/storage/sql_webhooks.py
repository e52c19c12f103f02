"""The notification outbox in SQL: webhook deliveries written with their cause.

``record_run_events`` runs inside the transaction that made runs dead (or retrying),
so an event exists exactly when its state change committed. It writes nothing
unless a subscription wants the event: with notifications off it costs nothing.
The sweep claims due rows (SKIP LOCKED on PostgreSQL: replicas share it), and
each is marked delivered, rescheduled with its error, or given up.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobsched.core.models import Run
from jobsched.core.webhooks import Delivery, Subscription
from jobsched.storage.schema import jobs, webhook_deliveries
from jobsched.storage.sql_base import SQLStorageBase


async def record_run_events(
    connection: AsyncConnection,
    subscriptions: Sequence[Subscription],
    event_type: str,
    changed: Sequence[Run],
    now: sa.ColumnElement[datetime],
) -> None:
    """Write a delivery of ``event_type`` per run of ``changed`` and endpoint wanting it.

    Call it in the transaction that changed the runs; it reads nothing and writes
    nothing unless some subscription wants ``event_type``.
    """
    if not changed or not any(event_type in each.events for each in subscriptions):
        return
    query = sa.select(jobs.c.id, jobs.c.name).where(jobs.c.id.in_({run.job_id for run in changed}))
    names = {row.id: row.name for row in await connection.execute(query)}
    for run in changed:
        data = {
            "run_id": str(run.id),
            "job_id": str(run.job_id),
            "job_name": names.get(run.job_id),
            "type": run.job_type,
            "queue": run.queue,
            "attempt": run.attempt,
            "error": run.last_error,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        }
        for subscription in subscriptions:
            if subscription.wants(event_type, run.queue, run.job_type):
                await connection.execute(
                    sa.insert(webhook_deliveries).values(
                        id=uuid.uuid4(),
                        endpoint=subscription.endpoint,
                        event_type=event_type,
                        data=data,
                        created_at=now,
                        attempts=0,
                        next_attempt_at=now,
                    )
                )


class SQLWebhooks(SQLStorageBase):
    """The webhook deliveries part of ``SQLStorage``."""

    def set_webhook_subscriptions(self, subscriptions: Sequence[Subscription]) -> None:
        """Which events state changes record from now on (none by default)."""
        self._webhook_subscriptions = tuple(subscriptions)

    async def claim_webhook_deliveries(self, limit: int, hold_seconds: float) -> list[Delivery]:
        """Due deliveries, each held for ``hold_seconds`` (pushed back) while it is sent.

        A sweep that dies mid-send leaves its rows due again once the hold ends.
        """
        table = webhook_deliveries
        due = (
            sa.select(table.c.id)
            .where(table.c.next_attempt_at <= self._now())
            .order_by(table.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        hold = (
            sa.update(table)
            .where(table.c.id.in_(due))
            .values(next_attempt_at=self._now_plus(hold_seconds))
            .returning(
                table.c.id,
                table.c.endpoint,
                table.c.event_type,
                table.c.data,
                table.c.created_at,
                table.c.attempts,
            )
        )
        async with self._transaction() as connection:
            rows = (await connection.execute(hold)).all()
        deliveries = [
            Delivery(
                id=row.id,
                endpoint=row.endpoint,
                event_type=row.event_type,
                data=row.data,
                created_at=row.created_at,
                attempts=row.attempts,
            )
            for row in rows
        ]
        return sorted(deliveries, key=lambda delivery: (delivery.created_at, str(delivery.id)))

    async def mark_webhook_delivered(self, delivery_id: uuid.UUID) -> None:
        await self._finish_delivery(delivery_id, delivered_at=self._now())

    async def give_up_webhook_delivery(self, delivery_id: uuid.UUID, error: str) -> None:
        await self._finish_delivery(delivery_id, given_up_at=self._now(), last_error=error)

    async def retry_webhook_delivery(
        self, delivery_id: uuid.UUID, *, delay_seconds: float, error: str
    ) -> None:
        table = webhook_deliveries
        async with self._single_statement() as connection:
            await connection.execute(
                sa.update(table)
                .where(table.c.id == delivery_id, table.c.next_attempt_at.is_not(None))
                .values(
                    attempts=table.c.attempts + 1,
                    next_attempt_at=self._now_plus(delay_seconds),
                    last_error=error,
                )
            )

    async def _finish_delivery(self, delivery_id: uuid.UUID, **values: object) -> None:
        table = webhook_deliveries
        async with self._single_statement() as connection:
            await connection.execute(
                sa.update(table)
                .where(table.c.id == delivery_id, table.c.next_attempt_at.is_not(None))
                .values(attempts=table.c.attempts + 1, next_attempt_at=None, **values)
            )

    async def count_webhook_backlog(self) -> int:
        table = webhook_deliveries
        async with self._single_statement() as connection:
            count = await connection.scalar(
                sa.select(sa.func.count())
                .select_from(table)
                .where(table.c.next_attempt_at.is_not(None))
            )
        return int(count or 0)

    async def prune_webhook_deliveries(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` done deliveries created before ``before``."""
        table = webhook_deliveries
        done = (
            sa.select(table.c.id)
            .where(table.c.next_attempt_at.is_(None), table.c.created_at < before)
            .limit(limit)
        )
        async with self._transaction() as connection:
            result = await connection.execute(sa.delete(table).where(table.c.id.in_(done)))
        return int(result.rowcount or 0)
