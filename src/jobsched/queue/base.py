"""The queue contract: how runs travel from the scheduler to workers.

PostgreSQL (or SQLite) is always the source of truth for a run's state; a queue
only carries the news that a run is ready. Every backend therefore follows the
same rules:

* **Outbox.** A run is committed before it is published. Committed runs with no
  ``published_at`` (new runs, retries whose ``not_before`` has come, runs rescued
  from a dead worker) are published by the scheduler's outbox sweep
  (``Storage.publish_pending``), which marks them published only after
  ``publish`` returned: a crash or a broker outage in between means they are
  published again, never lost. Delayed retries wait in the database, not in the
  broker, so they never block a queue.
* **Claims are conditional.** ``claim`` hands a worker only runs it now holds a
  lease on (``Storage.claim_runs``); a delivery whose run is no longer claimable
  (running elsewhere, finished, cancelled) is acknowledged and dropped there, so
  duplicate deliveries are harmless: execution is at-least-once, completion is
  recorded once.
* **Acks follow commits.** ``ack`` (or ``dead_letter``) is called only after the
  run's outcome is committed; a worker that dies before acking leaves the
  delivery to be redelivered (RabbitMQ) or reclaimed after an idle time (Redis).
* **Broker state loss is detected.** A backend that finds its broker lost
  published messages (a Redis restarted without persistence) reports it from
  ``lost_messages_since_last_check``; the scheduler then marks every waiting run
  unpublished so the outbox publishes it again.
* **Outages are survived.** Methods raise ``QueueError`` while the broker is
  unreachable and reconnect by themselves on a later call.

A backend where committing a run *is* publishing it (the database queue) says so
with ``commits_are_publishes``; its ``publish`` only wakes local claimers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from jobsched.core.models import Deliverable, Run


class RunQueue(Protocol):
    commits_are_publishes: bool

    async def close(self) -> None: ...

    async def publish(self, runs: Sequence[Deliverable]) -> None:
        """Offer committed runs to workers, durably, by their queue and priority.

        Returns only when the broker has taken them (publisher confirms / the
        command's reply); raises ``QueueError`` otherwise.
        """

    async def claim(
        self,
        worker_id: str,
        queues: Sequence[str],
        limit: int,
        lease_seconds: float,
        wait_seconds: float,
    ) -> list[Run]:
        """Claim up to ``limit`` runs, waiting up to ``wait_seconds`` for the first one.

        Higher ``priority`` first. Each returned run is ``running`` under a lease
        held by ``worker_id``. Deliveries whose runs could not be claimed are
        acknowledged before returning.
        """

    async def ack(self, runs: Sequence[Run]) -> None:
        """The outcomes of these claimed runs are committed; forget their deliveries."""

    async def dead_letter(self, runs: Sequence[Run]) -> None:
        """These claimed runs ended ``dead`` (committed); move their deliveries aside."""

    async def lost_messages_since_last_check(self) -> bool:
        """True if the broker lost its messages (e.g. restarted empty) since the last call."""

    async def depth(self) -> dict[str, int]:
        """Runs waiting per queue name (the autoscaling signal)."""

    async def ping(self) -> None:
        """Return when the broker answers; raise ``QueueError`` otherwise (readiness)."""
