"""The queue contract: how runs travel from the scheduler to workers.

PostgreSQL (or SQLite) is always the source of truth for a run's state; a queue
only carries the news that a run is ready. Every backend therefore follows the
same rules:

* ``publish`` is called only after the runs are committed (transactional outbox).
  A backend where committing *is* publishing (the database queue) says so with
  ``commits_are_publishes`` and the scheduler marks its runs published at insert.
* ``claim`` hands a worker runs it now holds a lease on; a delivery whose run is
  no longer claimable (running elsewhere, finished, cancelled) is dropped there,
  so duplicate deliveries are harmless (execution is at-least-once).
* ``ack`` is called only after the run's outcome is committed.
* ``retry_later`` is called after a failed attempt was committed as ``retrying``
  with its ``not_before``; the backend must offer the run again no earlier.
* Runs whose worker died are found by the lease rescuer in storage and simply
  published again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from jobsched.core.models import Run


class RunQueue(Protocol):
    commits_are_publishes: bool

    async def close(self) -> None: ...

    async def publish(self, runs: Sequence[Run]) -> None:
        """Offer committed runs to workers. May raise ``QueueError``; the outbox retries."""

    async def claim(
        self,
        worker_id: str,
        queues: Sequence[str],
        limit: int,
        lease_seconds: float,
        wait_seconds: float,
    ) -> list[Run]:
        """Claim up to ``limit`` runs, waiting up to ``wait_seconds`` for the first one."""

    async def ack(self, runs: Sequence[Run]) -> None:
        """The outcomes of these claimed runs are committed; forget their deliveries."""

    async def retry_later(self, run: Run, not_before: datetime) -> None:
        """Offer ``run`` again at ``not_before`` (its ``retrying`` state is committed)."""

    async def depth(self) -> dict[str, int]:
        """Runs waiting per queue name (the autoscaling signal)."""
