"""``/workers``: the worker processes that registered, and whether each is still alive."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from jobsched.api.auth import Reader
from jobsched.api.dependencies import ServicesDependency
from jobsched.api.request_checks import CheckedRoute
from jobsched.api.schemas import PROBLEM_RESPONSES, WorkerList, WorkerOut, WorkerStatus
from jobsched.storage.base import WorkerRecord

router = APIRouter(route_class=CheckedRoute, tags=["workers"], responses=PROBLEM_RESPONSES)


def worker_status(record: WorkerRecord, now: datetime, silence_seconds: float) -> WorkerStatus:
    """``gone`` once the worker stopped, or its heartbeat is older than ``silence_seconds``.

    The API uses ``worker.lease_seconds``: a worker silent that long has lost the
    leases of its runs too, so they are being rescued. ``now`` is the database's
    clock, which wrote the heartbeat.
    """
    if record.stopped_at is not None:
        return "gone"
    if now - record.heartbeat_at > timedelta(seconds=silence_seconds):
        return "gone"
    return "alive"


@router.get("/workers", summary="List workers")
async def list_workers(
    principal: Reader,
    services: ServicesDependency,
    status: Annotated[
        WorkerStatus | None, Query(description="Only workers alive, or only those gone.")
    ] = None,
) -> WorkerList:
    """Every registered worker, newest start first, with its heartbeat and status."""
    records = await services.storage.list_workers()
    now = await services.storage.now()
    silence_seconds = services.settings.worker.lease_seconds
    items = [
        WorkerOut.from_record(record, worker_status(record, now, silence_seconds))
        for record in records
        if principal.queues is None or principal.queues.intersection(record.info.queues)
    ]
    return WorkerList(items=[item for item in items if status is None or item.status == status])
