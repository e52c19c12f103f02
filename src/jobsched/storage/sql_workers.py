"""The worker registry in SQL: who is running, since when, and last heard from when."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from jobsched.storage.base import WorkerInfo, WorkerRecord
from jobsched.storage.rows import worker_from_row, worker_info_values
from jobsched.storage.schema import workers
from jobsched.storage.sql_base import SQLStorageBase


class SQLWorkerRegistry(SQLStorageBase):
    """The worker-registry part of ``SQLStorage``; times are the database's clock."""

    async def register_worker(self, info: WorkerInfo) -> WorkerRecord:
        now = self._now()  # one instant for both (on SQLite each call reads the clock)
        values = {
            **worker_info_values(info),
            "started_at": now,
            "heartbeat_at": now,
            "stopped_at": None,
            "runs_in_progress": 0,
        }
        insert = self._insert(workers).values(values)
        # A restarted worker that keeps its id (a configured worker.id) starts afresh.
        upsert = insert.on_conflict_do_update(
            index_elements=["id"],
            set_={name: insert.excluded[name] for name in values if name != "id"},
        ).returning(workers)
        async with self._transaction() as connection:
            row = (await connection.execute(upsert)).mappings().one()
        return worker_from_row(row)

    async def worker_heartbeat(self, worker_id: str, runs_in_progress: int) -> bool:
        statement = (
            sa.update(workers)
            .where(workers.c.id == worker_id)
            .values(heartbeat_at=self._now(), runs_in_progress=runs_in_progress)
        )
        async with self._transaction() as connection:
            return (await connection.execute(statement)).rowcount == 1

    async def deregister_worker(self, worker_id: str) -> None:
        statement = (
            sa.update(workers)
            .where(workers.c.id == worker_id)
            .values(stopped_at=self._now(), runs_in_progress=0)
        )
        async with self._transaction() as connection:
            await connection.execute(statement)

    async def list_workers(self) -> list[WorkerRecord]:
        query = sa.select(workers).order_by(workers.c.started_at.desc(), workers.c.id)
        async with self._single_statement() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [worker_from_row(row) for row in rows]

    async def prune_workers(self, last_seen_before: datetime) -> int:
        last_seen = sa.func.coalesce(workers.c.stopped_at, workers.c.heartbeat_at)
        statement = sa.delete(workers).where(last_seen < last_seen_before)
        async with self._transaction() as connection:
            return (await connection.execute(statement)).rowcount
