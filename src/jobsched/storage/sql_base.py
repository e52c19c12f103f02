"""``SQLStorageBase``: what the method groups of ``SQLStorage`` share.

``SQLStorage`` (``storage.database``) is composed of one mixin per concern: jobs
(``sql_jobs``), the scheduler's firing (``sql_firing``), the outbox
(``sql_outbox``), runs as the API and operators see them (``sql_runs``), runs
under a worker's lease (``sql_leases``) and the worker registry
(``sql_workers``). Each subclasses this base, which declares the connection and
dialect helpers ``SQLStorage`` implements and holds what more than one group
uses, so the groups import nothing from one another.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from jobsched.core.access import AuditEntry
from jobsched.core.errors import InvalidInputError
from jobsched.core.ids import new_id
from jobsched.core.models import CLAIMABLE_RUN_STATUSES, AttemptStatus
from jobsched.core.webhooks import Subscription
from jobsched.storage.schema import attempts, audit_events

CLAIMABLE_STATUS_VALUES = [status.value for status in CLAIMABLE_RUN_STATUSES]

# A job's updated_at is its version (the API's cache keeps the newest one it is
# shown), so a write never moves it back: a writer's `now` is read before it takes
# the row lock, and another writer may have committed a later one meanwhile.
_VERSION_STEP = timedelta(microseconds=1)


class SQLStorageBase(ABC):
    """The helpers every method group of ``SQLStorage`` builds on."""

    dialect: str
    _engine: AsyncEngine
    # Which events state changes record in webhook_deliveries (see sql_webhooks).
    _webhook_subscriptions: tuple[Subscription, ...] = ()

    @abstractmethod
    def _transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection in one transaction; ``StorageError`` if the database is unavailable."""

    @abstractmethod
    def _single_statement(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection in autocommit, for work that is one statement."""

    @abstractmethod
    def _now(self) -> sa.ColumnElement[datetime]:
        """The current time, as SQL: the database's clock where it has one."""

    @abstractmethod
    def _now_plus(self, seconds: float) -> sa.ColumnElement[datetime]:
        """``seconds`` after ``_now()``, as SQL."""

    @abstractmethod
    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT into ``table`` (it offers ``on_conflict_do_*``)."""

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
        """End ``run_id``'s attempt ``attempt`` now; the run's own row is the caller's to write."""
        await connection.execute(
            sa.update(attempts)
            .where(attempts.c.run_id == run_id, attempts.c.attempt == attempt)
            .values(status=status.value, finished_at=self._now(), error=error, result=result)
        )


async def write_audit(
    connection: AsyncConnection,
    entry: AuditEntry | None,
    now: sa.ColumnElement[datetime] | datetime,
    *,
    target_kind: str | None = None,
    target_id: object = None,
    fields: tuple[str, ...] | None = None,
) -> None:
    """Insert ``entry``'s audit row on ``connection``, inside the caller's transaction.

    The keyword arguments fill in what only the change knows (a new job's id, the
    fields an edit touched); ``entry``'s own values win where it has them.
    """
    if entry is None:
        return
    chosen_target = entry.target_id if entry.target_id is not None else target_id
    await connection.execute(
        sa.insert(audit_events).values(
            id=new_id(),
            at=now,
            action=entry.action,
            token_id=entry.actor.token_id,
            token_name=entry.actor.name,
            target_kind=entry.target_kind or target_kind or "",
            target_id=None if chosen_target is None else str(chosen_target),
            request_id=entry.request_id,
            client_address=entry.client_address,
            fields=list(entry.fields or fields or ()),
        )
    )


def later_version(previous: datetime, proposed: datetime) -> datetime:
    """``proposed``, or just after ``previous`` if it is not later: versions only grow."""
    return max(proposed, previous + _VERSION_STEP)


def uuid_from_cursor(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as error:
        raise InvalidInputError("cursor", "not a cursor returned by this API") from error
