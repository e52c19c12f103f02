"""What the web dashboard reads and keeps in SQL: its sign-ins and its aggregate figures.

Sessions are stored by the SHA-256 of their id, as tokens are; the figures are
GROUP BY queries over indexed ranges (runs by status, attempts of the last hour by
minute) and a window query for the last few runs of a page of jobs, so none of them
reads the whole history.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa

from jobsched.core.models import AttemptStatus, RunStatus
from jobsched.storage.base import MinuteActivity, RunMark, UiSession
from jobsched.storage.schema import attempts, runs, ui_sessions
from jobsched.storage.sql_base import SQLStorageBase

_FAILED_ATTEMPTS = [
    AttemptStatus.FAILED.value,
    AttemptStatus.TIMED_OUT.value,
    AttemptStatus.LOST.value,
]
# Attempts are counted by minute of their start or end; one that started this much
# before the window and ended inside it is left out, which keeps the scan a range.
_LONGEST_ATTEMPT_COUNTED = timedelta(hours=1)


class SQLDashboard(SQLStorageBase):
    """The dashboard part of ``SQLStorage``."""

    # --- sessions ---------------------------------------------------------------

    async def create_ui_session(
        self, *, session_hash: str, token_hash: str, now: datetime, expires_at: datetime
    ) -> None:
        async with self._transaction() as connection:
            await connection.execute(sa.delete(ui_sessions).where(ui_sessions.c.expires_at <= now))
            await connection.execute(
                sa.insert(ui_sessions).values(
                    session_hash=session_hash,
                    token_hash=token_hash,
                    created_at=now,
                    expires_at=expires_at,
                )
            )

    async def find_ui_session(self, session_hash: str) -> UiSession | None:
        query = sa.select(ui_sessions).where(ui_sessions.c.session_hash == session_hash)
        async with self._single_statement() as connection:
            row = (await connection.execute(query)).mappings().first()
        if row is None:
            return None
        return UiSession(
            token_hash=row["token_hash"], created_at=row["created_at"], expires_at=row["expires_at"]
        )

    async def delete_ui_session(self, session_hash: str) -> None:
        statement = sa.delete(ui_sessions).where(ui_sessions.c.session_hash == session_hash)
        async with self._single_statement() as connection:
            await connection.execute(statement)

    # --- figures ----------------------------------------------------------------

    async def run_status_counts(self, *, queues: frozenset[str] | None = None) -> dict[str, int]:
        query = sa.select(runs.c.status, sa.func.count()).group_by(runs.c.status)
        if queues is not None:
            query = query.where(runs.c.queue.in_(sorted(queues)))
        async with self._single_statement() as connection:
            rows = (await connection.execute(query)).all()
        return {str(status): int(count) for status, count in rows}

    async def attempts_per_minute(
        self, since: datetime, *, queues: frozenset[str] | None = None
    ) -> list[MinuteActivity]:
        """Attempts started, succeeded and failed per minute from ``since``, oldest first.

        Only minutes with any activity are returned; failed counts ``failed``,
        ``timed_out`` and ``lost`` attempts.
        """
        started_minute = self._minute_of(attempts.c.started_at)
        ended_minute = self._minute_of(attempts.c.finished_at)
        started = (
            sa.select(started_minute.label("minute"), sa.func.count())
            .where(attempts.c.started_at >= since)
            .group_by(started_minute)
        )
        ended = (
            sa.select(ended_minute.label("minute"), attempts.c.status, sa.func.count())
            .where(
                attempts.c.started_at >= since - _LONGEST_ATTEMPT_COUNTED,
                attempts.c.finished_at >= since,
            )
            .group_by(ended_minute, attempts.c.status)
        )
        if queues is not None:
            in_scope = attempts.c.run_id.in_(
                sa.select(runs.c.id).where(runs.c.queue.in_(sorted(queues)))
            )
            started, ended = started.where(in_scope), ended.where(in_scope)
        async with self._single_statement() as connection:
            started_rows = (await connection.execute(started)).all()
            ended_rows = (await connection.execute(ended)).all()
        counts: dict[int, list[int]] = {}
        for minute, count in started_rows:
            counts.setdefault(int(minute), [0, 0, 0])[0] += int(count)
        for minute, status, count in ended_rows:
            if status == AttemptStatus.SUCCEEDED.value:
                counts.setdefault(int(minute), [0, 0, 0])[1] += int(count)
            elif status in _FAILED_ATTEMPTS:
                counts.setdefault(int(minute), [0, 0, 0])[2] += int(count)
        return [
            MinuteActivity(
                minute=datetime.fromtimestamp(minute * 60, tz=since.tzinfo),
                started=values[0],
                succeeded=values[1],
                failed=values[2],
            )
            for minute, values in sorted(counts.items())
        ]

    def _minute_of(self, column: sa.ColumnElement[datetime]) -> sa.ColumnElement[int]:
        """Minutes since the epoch of a UTC timestamp column, as SQL."""
        if self.dialect == "postgresql":
            return sa.cast(sa.func.floor(sa.extract("epoch", column) / 60), sa.BigInteger())
        seconds = sa.cast(sa.func.strftime("%s", column), sa.Integer())
        return sa.cast(seconds / 60, sa.Integer())

    async def recent_runs_of_jobs(
        self, job_ids: Sequence[uuid.UUID], per_job: int
    ) -> dict[uuid.UUID, list[RunMark]]:
        """The last ``per_job`` runs of each job (newest fire time first)."""
        if not job_ids:
            return {}
        position = (
            sa.func.row_number()
            .over(
                partition_by=runs.c.job_id,
                order_by=(runs.c.scheduled_for.desc(), runs.c.id.desc()),
            )
            .label("position")
        )
        ranked = (
            sa.select(runs.c.id, runs.c.job_id, runs.c.status, runs.c.scheduled_for, position)
            .where(runs.c.job_id.in_(list(job_ids)))
            .subquery()
        )
        query = (
            sa.select(ranked.c.id, ranked.c.job_id, ranked.c.status, ranked.c.scheduled_for)
            .where(ranked.c.position <= per_job)
            .order_by(ranked.c.job_id, ranked.c.position)
        )
        async with self._single_statement() as connection:
            rows = (await connection.execute(query)).all()
        found: dict[uuid.UUID, list[RunMark]] = {job_id: [] for job_id in job_ids}
        for run_id, job_id, status, scheduled_for in rows:
            found[job_id].append(
                RunMark(id=run_id, status=RunStatus(status), scheduled_for=scheduled_for)
            )
        return found
