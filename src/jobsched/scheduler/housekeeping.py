"""Housekeeping done by the one scheduler replica that leads it.

Rescuing runs whose worker lease expired, pruning old history and exporting
queue depth need doing once, not once per replica: the leader (an advisory lock
on PostgreSQL, see ``storage.leadership``) does them, and another replica takes
over within a check interval when it dies. Each duty runs on its own interval.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from jobsched.config.settings import RetentionSettings, SchedulerSettings
from jobsched.monitoring import metrics
from jobsched.queue.base import RunQueue
from jobsched.storage.base import Storage
from jobsched.storage.leadership import AlwaysLeader, Leadership

logger = logging.getLogger("jobsched.scheduler")

# How often a follower asks whether the leader is gone.
LEADERSHIP_CHECK_INTERVAL_SECONDS = 1.0


class Housekeeper:
    def __init__(
        self,
        storage: Storage,
        queue: RunQueue,
        settings: SchedulerSettings,
        retention: RetentionSettings,
        leadership: Leadership | None = None,
    ) -> None:
        self._storage = storage
        self._queue = queue
        self._settings = settings
        self._retention = retention
        self._leadership = leadership or AlwaysLeader()
        self._next_leadership_check = 0.0
        self._is_leader = False
        self._next_rescue = 0.0
        self._next_prune = 0.0
        self._exported_queues: set[str] = set()

    async def run_due_duties(self) -> None:
        """Do whichever duties are due, if this replica leads. Raises ``JobschedError``."""
        now = time.monotonic()
        if now >= self._next_leadership_check:
            self._next_leadership_check = now + LEADERSHIP_CHECK_INTERVAL_SECONDS
            self._is_leader = await self._leadership.is_leader()
            metrics.SCHEDULER_LEADER.set(1 if self._is_leader else 0)
        if not self._is_leader:
            return
        if now >= self._next_rescue:
            self._next_rescue = now + self._settings.rescue_interval_seconds
            await self.rescue_expired_leases()
            await self._export_queue_depth()
            await self._export_outbox_backlog()
        if now >= self._next_prune:
            self._next_prune = now + self._retention.interval_seconds
            await self.prune_history()

    async def close(self) -> None:
        await self._leadership.close()

    async def rescue_expired_leases(self) -> None:
        report = await self._storage.rescue_expired_leases(self._settings.batch_size)
        if report.requeued and self._queue.commits_are_publishes:
            await self._queue.publish(report.requeued)
        # With a broker, rescued runs are unpublished again and the outbox sends them.
        metrics.RUNS_RESCUED.labels(outcome="requeued").inc(len(report.requeued))
        metrics.RUNS_RESCUED.labels(outcome="dead").inc(len(report.dead))
        metrics.LEASE_RESCUES.inc(len(report.requeued) + len(report.dead))
        if report.requeued or report.dead:
            logger.warning(
                "rescued runs with expired leases: %d requeued, %d dead",
                len(report.requeued),
                len(report.dead),
            )

    async def prune_history(self) -> int:
        """Delete finished runs, and workers gone, older than ``retention.days``, batch by batch."""
        cutoff = await self._storage.now() - timedelta(days=self._retention.days)
        pruned = 0
        while True:
            deleted = await self._storage.prune_history(cutoff, self._retention.batch_size)
            pruned += deleted
            if deleted < self._retention.batch_size:
                break
        if pruned:
            metrics.RUNS_PRUNED.inc(pruned)
            logger.info("pruned %d runs finished before %s", pruned, cutoff.isoformat())
        # Worker records of processes gone that long go too.
        await self._storage.prune_workers(cutoff)
        while (
            await self._storage.prune_webhook_deliveries(cutoff, self._retention.batch_size)
            >= self._retention.batch_size
        ):
            pass
        await self.prune_audit()
        return pruned

    async def prune_audit(self) -> int:
        """Delete audit rows older than ``retention.audit_days``, batch by batch."""
        cutoff = await self._storage.now() - timedelta(days=self._retention.audit_days)
        pruned = 0
        while True:
            deleted = await self._storage.prune_audit(cutoff, self._retention.batch_size)
            pruned += deleted
            if deleted < self._retention.batch_size:
                break
        if pruned:
            logger.info("pruned %d audit rows older than %s", pruned, cutoff.isoformat())
        return pruned

    async def _export_outbox_backlog(self) -> None:
        """On the database queue a commit is the publish: its outbox is always empty."""
        if self._queue.commits_are_publishes:
            metrics.OUTBOX_BACKLOG.set(0)
        else:
            metrics.OUTBOX_BACKLOG.set(await self._storage.count_unpublished())

    async def _export_queue_depth(self) -> None:
        """Set ``queue_depth`` per queue; a queue reported before and absent now is empty.

        Backends report only queues that hold runs (a GROUP BY leaves an empty queue
        out), so without the zeroing a drained queue's gauge would keep its last
        value and workers scaled on it would never scale down.
        """
        depths = await self._queue.depth()
        for queue_name in self._exported_queues - depths.keys():
            metrics.QUEUE_DEPTH.labels(queue=queue_name).set(0)
        for queue_name, depth in depths.items():
            metrics.QUEUE_DEPTH.labels(queue=queue_name).set(depth)
        self._exported_queues |= depths.keys()
