"""The database queue: runs wait in the ``runs`` table and workers claim them there.

Claims use ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any number of workers on
any number of hosts share the table without blocking each other; on SQLite the
single writer serialises them. Committing a run is publishing it, so there is no
outbox to sweep and nothing to acknowledge: the committed outcome is the ack.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from jobsched.core.models import Deliverable, Run
from jobsched.storage.base import Storage


class DatabaseQueue:
    commits_are_publishes = True

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        # Wakes claimers in this process (standalone mode) at once on publish.
        self._published = asyncio.Event()

    async def close(self) -> None:
        self._published.set()

    async def publish(self, runs: Sequence[Deliverable]) -> None:
        if runs:
            self._published.set()

    def on_runs_ready(self, queue_name: str) -> None:
        """A NOTIFY from the runs table (another process committed ready runs)."""
        self._published.set()

    async def claim(
        self,
        worker_id: str,
        queues: Sequence[str],
        limit: int,
        lease_seconds: float,
        wait_seconds: float,
    ) -> list[Run]:
        self._published.clear()
        claimed = await self._storage.claim_ready_runs(queues, limit, worker_id, lease_seconds)
        if claimed or wait_seconds <= 0:
            return claimed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._published.wait(), timeout=wait_seconds)
        return await self._storage.claim_ready_runs(queues, limit, worker_id, lease_seconds)

    async def ack(self, runs: Sequence[Run]) -> None:
        """Nothing to do: the committed outcome already took the run off the queue."""

    async def dead_letter(self, runs: Sequence[Run]) -> None:
        """Nothing to do: the run stays in the runs table as ``dead``, kept for inspection."""

    async def lost_messages_since_last_check(self) -> bool:
        """Never: the runs table is the queue."""
        return False

    async def depth(self) -> dict[str, int]:
        return await self._storage.ready_run_counts()

    async def ping(self) -> None:
        """The database is the broker: its ping is the storage's."""
        await self._storage.ping()
