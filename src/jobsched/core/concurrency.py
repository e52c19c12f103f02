"""Overlapping runs: what a job's ``concurrency_policy`` does with a fire, as in Kubernetes CronJob.

A pure decision over the fire times the scheduler is about to create and the
job's runs still queued, running or retrying; storage applies it in the same
transaction that creates the runs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from jobsched.core.models import ConcurrencyPolicy, RunStatus


@dataclass(frozen=True, slots=True)
class ActiveRun:
    id: uuid.UUID
    status: RunStatus
    scheduled_for: datetime


@dataclass(frozen=True, slots=True)
class ConcurrencyDecision:
    """Fire times to queue, fire times to record as skipped (with why), runs to cancel."""

    queued: list[datetime]
    skipped: list[tuple[datetime, str]] = field(default_factory=list)
    cancel: list[uuid.UUID] = field(default_factory=list)


def apply_concurrency_policy(
    policy: ConcurrencyPolicy, fire_times: list[datetime], active: list[ActiveRun]
) -> ConcurrencyDecision:
    """Decide the fate of ``fire_times`` (oldest first) given the job's ``active`` runs.

    ``allow``: all run. ``forbid``: none while a run is active; with none active,
    only the first of several fire times runs (the rest would overlap it).
    ``replace``: the newest fire time runs and every active run is cancelled; older
    fire times in the same batch are skipped as replaced.
    """
    if policy is ConcurrencyPolicy.ALLOW or not fire_times:
        return ConcurrencyDecision(queued=list(fire_times))
    if policy is ConcurrencyPolicy.FORBID:
        if active:
            blocker = active[0]
            reason = (
                f"skipped: run {blocker.id} of this job is still {blocker.status.value} "
                "(concurrency_policy: forbid)"
            )
            return ConcurrencyDecision(queued=[], skipped=[(at, reason) for at in fire_times])
        first, *rest = fire_times
        reason = (
            f"skipped: the run for {first.isoformat()} is still active (concurrency_policy: forbid)"
        )
        return ConcurrencyDecision(queued=[first], skipped=[(at, reason) for at in rest])
    *older, newest = fire_times
    reason = f"skipped: replaced by the run for {newest.isoformat()} (concurrency_policy: replace)"
    return ConcurrencyDecision(
        queued=[newest],
        skipped=[(at, reason) for at in older],
        cancel=[run.id for run in active],
    )
