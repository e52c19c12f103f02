"""Runs under a worker's lease, in SQL: claims, renewals, outcomes, releases, rescue.

A claim makes a run ``running`` under a lease held by one worker and opens its
attempt; the worker's heartbeats renew the lease and store the handler's latest
progress report in the attempt; its outcome or its release at shutdown ends the
attempt, each fenced by the lease (worker and attempt), so a worker that lost its
lease changes nothing. A lease that expires is rescued: the attempt is lost and the
run retried or dead by its policy. Renewals, outcomes and releases lock runs in id
order, so they never deadlock one another.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobsched.core.ids import new_id
from jobsched.core.models import AttemptStatus, JsonObject, Run, RunStatus
from jobsched.storage import postgres_batches
from jobsched.storage.base import AttemptOutcome, RescueReport
from jobsched.storage.rows import run_from_row
from jobsched.storage.schema import attempts, runs
from jobsched.storage.sql_base import CLAIMABLE_STATUS_VALUES, SQLStorageBase
from jobsched.storage.sql_webhooks import record_run_events

_LOST_LEASE_ERROR = "lease expired: the worker stopped renewing it (killed, hung or cut off)"


# The event of a run's new status, when an outcome or a rescue gives it that status.
_OUTCOME_EVENTS = {RunStatus.DEAD: "run.dead", RunStatus.RETRYING: "run.retrying"}


class SQLLeases(SQLStorageBase):
    """The leased-runs part of ``SQLStorage``: the database queue and the workers' calls."""

    async def ready_run_counts(self) -> dict[str, int]:
        query = (
            sa.select(runs.c.queue, sa.func.count())
            .where(runs.c.status.in_(CLAIMABLE_STATUS_VALUES))
            .group_by(runs.c.queue)
        )
        async with self._single_statement() as connection:
            rows = (await connection.execute(query)).all()
        return {queue: count for queue, count in rows}

    async def claim_ready_runs(
        self, queues: Sequence[str], limit: int, worker_id: str, lease_seconds: float
    ) -> list[Run]:
        if self.dialect == "postgresql":
            async with self._single_statement() as connection:
                return _by_priority(
                    await postgres_batches.claim_ready_runs(
                        connection, queues, limit, worker_id, lease_seconds
                    )
                )
        ready = (
            sa.select(runs.c.id)
            .where(
                runs.c.status.in_(CLAIMABLE_STATUS_VALUES),
                runs.c.queue.in_(queues),
                runs.c.not_before <= self._now(),
            )
            .order_by(runs.c.priority.desc(), runs.c.not_before, runs.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return await self._claim(runs.c.id.in_(ready), worker_id, lease_seconds)

    async def claim_runs(
        self, run_ids: Sequence[uuid.UUID], worker_id: str, lease_seconds: float
    ) -> list[Run]:
        if not run_ids:
            return []
        if self.dialect == "postgresql":
            async with self._single_statement() as connection:
                return _by_priority(
                    await postgres_batches.claim_runs(connection, run_ids, worker_id, lease_seconds)
                )
        return await self._claim(
            sa.and_(
                runs.c.id.in_(run_ids),
                runs.c.status.in_(CLAIMABLE_STATUS_VALUES),
                # A stale duplicate delivery must not start a retry before its backoff ends.
                runs.c.not_before <= self._now(),
            ),
            worker_id,
            lease_seconds,
        )

    async def _claim(
        self, condition: sa.ColumnElement[bool], worker_id: str, lease_seconds: float
    ) -> list[Run]:
        claim = (
            sa.update(runs)
            .where(condition)
            .values(
                status=RunStatus.RUNNING.value,
                attempt=runs.c.attempt + 1,
                lease_owner=worker_id,
                lease_expires_at=self._now_plus(lease_seconds),
                started_at=sa.func.coalesce(runs.c.started_at, self._now()),
                updated_at=self._now(),
            )
            .returning(runs)
        )
        async with self._transaction() as connection:
            claimed = [run_from_row(row) for row in (await connection.execute(claim)).mappings()]
            if claimed:
                await connection.execute(
                    sa.insert(attempts),
                    [
                        {
                            "id": new_id(),
                            "run_id": run.id,
                            "attempt": run.attempt,
                            "status": AttemptStatus.RUNNING.value,
                            "worker_id": worker_id,
                            "started_at": run.updated_at,
                        }
                        for run in claimed
                    ],
                )
        return _by_priority(claimed)

    async def renew_leases(
        self,
        worker_id: str,
        held: Sequence[tuple[uuid.UUID, int]],
        lease_seconds: float,
        *,
        progress: Mapping[tuple[uuid.UUID, int], JsonObject] | None = None,
    ) -> set[uuid.UUID]:
        if not held:
            return set()
        # Fenced in SQL: a stale attempt's heartbeat must not extend the current lease.
        still_held = _locked_while_held(worker_id, held)
        renew = (
            sa.update(runs)
            .where(runs.c.id.in_(still_held))
            .values(lease_expires_at=self._now_plus(lease_seconds))
            .returning(runs.c.id, runs.c.attempt)
        )
        async with self._transaction() as connection:
            renewed = {(row.id, row.attempt) for row in await connection.execute(renew)}
            if progress:
                await _write_progress(connection, progress, renewed)
        return {run_id for run_id, _ in renewed}

    async def finish_attempts(self, outcomes: Sequence[AttemptOutcome]) -> list[bool]:
        if not outcomes:
            return []
        notify = self._notified_outcomes(outcomes)
        if self.dialect == "postgresql":
            if not notify:
                async with self._single_statement() as connection:
                    return await postgres_batches.finish_attempts(connection, outcomes)
            async with self._transaction() as connection:
                done = await postgres_batches.finish_attempts(connection, outcomes)
                await self._record_outcome_events(connection, notify, outcomes, done)
            return done
        accepted: dict[int, bool] = {}
        # In run-id order, the order renew_leases locks rows in, so the two never deadlock.
        in_lock_order = sorted(range(len(outcomes)), key=lambda index: outcomes[index].run_id)
        async with self._transaction() as connection:
            for index in in_lock_order:
                accepted[index] = await self._finish_attempt(connection, outcomes[index])
            done = [accepted[index] for index in range(len(outcomes))]
            await self._record_outcome_events(connection, notify, outcomes, done)
        return done

    def _notified_outcomes(self, outcomes: Sequence[AttemptOutcome]) -> dict[RunStatus, str]:
        """The run statuses of ``outcomes`` whose event some subscription wants."""
        wanted = {event for each in self._webhook_subscriptions for event in each.events}
        return {
            status: event
            for status, event in _OUTCOME_EVENTS.items()
            if event in wanted and any(outcome.run_status == status for outcome in outcomes)
        }

    async def _record_outcome_events(
        self,
        connection: AsyncConnection,
        notify: Mapping[RunStatus, str],
        outcomes: Sequence[AttemptOutcome],
        accepted: Sequence[bool],
    ) -> None:
        for status, event in notify.items():
            run_ids = [
                outcome.run_id
                for outcome, ok in zip(outcomes, accepted, strict=True)
                if ok and outcome.run_status == status
            ]
            if not run_ids:
                continue
            rows = await connection.execute(sa.select(runs).where(runs.c.id.in_(run_ids)))
            changed = [run_from_row(row) for row in rows.mappings()]
            await record_run_events(
                connection, self._webhook_subscriptions, event, changed, self._now()
            )

    async def _finish_attempt(self, connection: AsyncConnection, outcome: AttemptOutcome) -> bool:
        final = outcome.run_status.is_final
        values: dict[str, Any] = {
            "status": outcome.run_status.value,
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": self._now(),
            "finished_at": self._now() if final else None,
            "last_error": outcome.error,
            "result": outcome.result,
        }
        if outcome.retry_at is not None:
            values["not_before"] = outcome.retry_at
            # The outbox publishes the retry once ``not_before`` has come.
            values["published_at"] = None
        fenced = (
            sa.update(runs)
            .where(
                runs.c.id == outcome.run_id,
                runs.c.attempt == outcome.attempt,
                runs.c.lease_owner == outcome.worker_id,
                runs.c.status == RunStatus.RUNNING.value,
            )
            .values(values)
        )
        if (await connection.execute(fenced)).rowcount != 1:
            return False
        await self._end_attempt(
            connection,
            outcome.run_id,
            outcome.attempt,
            status=outcome.attempt_status,
            error=outcome.error,
            result=outcome.result,
        )
        return True

    async def release_runs(
        self, worker_id: str, held: Sequence[tuple[uuid.UUID, int]]
    ) -> list[Run]:
        if not held:
            return []
        still_held = _locked_while_held(worker_id, held)
        counted_before = runs.c.attempt > 1
        release = (
            sa.update(runs)
            .where(runs.c.id.in_(still_held))
            .values(
                status=sa.case(
                    (counted_before, RunStatus.RETRYING.value), else_=RunStatus.QUEUED.value
                ),
                attempt=runs.c.attempt - 1,
                # started_at is the first counted attempt's start: none is left if this was it.
                started_at=sa.case((counted_before, runs.c.started_at), else_=sa.null()),
                lease_owner=None,
                lease_expires_at=None,
                not_before=self._now(),
                updated_at=self._now(),
                published_at=None,
                last_error=f"handed back by worker {worker_id} at shutdown (attempt not counted)",
            )
            .returning(runs)
        )
        async with self._transaction() as connection:
            released = [run_from_row(row) for row in (await connection.execute(release)).mappings()]
            if released:
                uncounted = [(run.id, run.attempt + 1) for run in released]
                await connection.execute(
                    sa.delete(attempts).where(
                        sa.tuple_(attempts.c.run_id, attempts.c.attempt).in_(uncounted)
                    )
                )
        return released

    # --- rescue ---------------------------------------------------------------------

    async def rescue_expired_leases(self, limit: int) -> RescueReport:
        expired = (
            sa.select(runs)
            .where(runs.c.status == RunStatus.RUNNING.value, runs.c.lease_expires_at < self._now())
            .order_by(runs.c.lease_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self._transaction() as connection:
            rows = (await connection.execute(expired)).mappings().all()
            report = RescueReport()
            for row in rows:
                run = run_from_row(row)
                out_of_attempts = run.attempt >= run.retry.max_attempts
                status = RunStatus.DEAD if out_of_attempts else RunStatus.RETRYING
                rescued = await connection.execute(
                    sa.update(runs)
                    .where(runs.c.id == run.id)
                    .values(
                        status=status.value,
                        lease_owner=None,
                        lease_expires_at=None,
                        not_before=self._now(),
                        updated_at=self._now(),
                        finished_at=self._now() if out_of_attempts else None,
                        last_error=_LOST_LEASE_ERROR,
                        # Back through the outbox: the broker's delivery of it is spent.
                        published_at=None,
                    )
                    .returning(runs)
                )
                await self._end_attempt(
                    connection,
                    run.id,
                    run.attempt,
                    status=AttemptStatus.LOST,
                    error=_LOST_LEASE_ERROR,
                    result=None,
                )
                bucket = report.dead if out_of_attempts else report.requeued
                bucket.append(run_from_row(rescued.mappings().one()))
            for event, changed in (("run.dead", report.dead), ("run.retrying", report.requeued)):
                await record_run_events(
                    connection, self._webhook_subscriptions, event, changed, self._now()
                )
            return report


async def _write_progress(
    connection: AsyncConnection,
    progress: Mapping[tuple[uuid.UUID, int], JsonObject],
    renewed: set[tuple[uuid.UUID, int]],
) -> None:
    """Make each report its attempt's ``progress``, for the attempts just renewed only.

    ``renewed`` holds the (run, attempt) pairs the renewal fenced by worker and
    attempt: each is a running run's current attempt, so a running one. Their run
    rows are locked by the renewal: whoever else writes these attempts (an
    outcome, a cancellation, a rescue) locks the run first, so this update takes no
    lock out of order.
    """
    # In run-id order, as finish_attempts writes attempts.
    reports = [
        {"run": run_id, "number": attempt, "report": progress[run_id, attempt]}
        for run_id, attempt in sorted(progress)
        if (run_id, attempt) in renewed
    ]
    if not reports:
        return
    await connection.execute(
        sa.update(attempts)
        .where(
            attempts.c.run_id == sa.bindparam("run"),
            attempts.c.attempt == sa.bindparam("number"),
        )
        .values(progress=sa.bindparam("report", type_=attempts.c.progress.type)),
        reports,
    )


def _locked_while_held(
    worker_id: str, held: Sequence[tuple[uuid.UUID, int]]
) -> sa.Select[tuple[uuid.UUID]]:
    """The ids of the runs of ``held`` (run, attempt) whose lease ``worker_id`` still holds.

    Fenced by attempt: a stale attempt matches nothing. Rows are locked in id order by
    every writer of a worker's runs (renewals, outcomes, releases): the same worker's
    outcome writer updates some of these rows at the very moment its heartbeat renews
    them, and two transactions locking rows in different orders deadlock.
    """
    return (
        sa.select(runs.c.id)
        .where(
            sa.tuple_(runs.c.id, runs.c.attempt).in_(list(held)),
            runs.c.lease_owner == worker_id,
            runs.c.status == RunStatus.RUNNING.value,
        )
        .order_by(runs.c.id)
        .with_for_update()
    )


def _by_priority(claimed: list[Run]) -> list[Run]:
    """Claimed runs in the order to start them: highest priority, then longest waiting."""
    return sorted(claimed, key=lambda run: (-run.priority, run.not_before))
