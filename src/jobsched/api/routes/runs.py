"""``/runs`` and ``/jobs/{id}/runs``: the runs of jobs and their attempts; cancel and retry.

Reading needs ``read``, cancel and retry ``operate``; a token limited to queues sees
only the runs of those queues.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from jobsched.api.auth import Operator, Reader, audit_entry
from jobsched.api.dependencies import PageDependency, ServicesDependency
from jobsched.api.publishing import publish_committed_run
from jobsched.api.request_checks import CheckedRoute
from jobsched.api.routes.jobs import visible_job
from jobsched.api.schemas import PROBLEM_RESPONSES, RunDetailOut, RunOut, RunPage
from jobsched.core.access import Principal
from jobsched.core.errors import NotFoundError
from jobsched.core.models import RunStatus

router = APIRouter(route_class=CheckedRoute, tags=["runs"], responses=PROBLEM_RESPONSES)

RunId = Annotated[uuid.UUID, Path(alias="id", description="The run's id (a UUID).")]
JobId = Annotated[uuid.UUID, Path(alias="id", description="The job's id (a UUID).")]
StatusFilter = Annotated[RunStatus | None, Query(description="Only runs in this status.")]


async def _run_page(
    services: ServicesDependency,
    page: PageDependency,
    principal: Principal,
    job_id: uuid.UUID | None,
    run_status: RunStatus | None,
) -> RunPage:
    found = await services.storage.list_runs(
        job_id=job_id,
        status=run_status,
        limit=page.limit,
        cursor=page.cursor,
        queues=principal.queues,
    )
    return RunPage(
        items=[RunOut.from_run(run) for run in found.items], next_cursor=found.next_cursor
    )


@router.get("/runs", summary="List runs")
async def list_runs(
    principal: Reader,
    services: ServicesDependency,
    page: PageDependency,
    status: StatusFilter = None,
) -> RunPage:
    """Runs newest fire time first."""
    return await _run_page(services, page, principal, None, status)


@router.get("/jobs/{id}/runs", summary="List a job's runs")
async def list_job_runs(
    job_id: JobId,
    principal: Reader,
    services: ServicesDependency,
    page: PageDependency,
    status: StatusFilter = None,
) -> RunPage:
    """The job's runs, newest fire time first; 404 if the job does not exist."""
    await visible_job(services, principal, job_id)
    return await _run_page(services, page, principal, job_id, status)


@router.get("/runs/{id}", summary="Get a run with its attempts")
async def get_run(run_id: RunId, principal: Reader, services: ServicesDependency) -> RunDetailOut:
    run = await services.storage.get_run(run_id)
    if not principal.sees_queue(run.queue):
        raise NotFoundError("run", run_id)
    attempts = await services.storage.list_attempts(run_id)
    return RunDetailOut.from_run_and_attempts(run, attempts)


@router.post("/runs/{id}/cancel", summary="Cancel a run")
async def cancel_run(
    run_id: RunId, request: Request, principal: Operator, services: ServicesDependency
) -> RunOut:
    """Cancel a queued, retrying or running run; 409 on ``status`` if it has finished.

    A running run's worker loses its lease: it stops the handler at its next
    heartbeat, and whatever it reports afterwards is refused.
    """
    run = await services.storage.cancel_run(
        run_id, queues=principal.queues, audit=audit_entry(request, principal, "run.cancelled")
    )
    return RunOut.from_run(run)


@router.post("/runs/{id}/retry", summary="Retry a dead or cancelled run")
async def retry_run(
    run_id: RunId, request: Request, principal: Operator, services: ServicesDependency
) -> RunOut:
    """Queue the run again, due now, with as many attempts as it first had.

    409 on ``status`` unless the run is ``dead`` or ``cancelled``. The run is
    committed, then published (or left to the outbox if the broker is down).
    """
    run = await services.storage.retry_run(
        run_id, queues=principal.queues, audit=audit_entry(request, principal, "run.retried")
    )
    await publish_committed_run(services, run)
    return RunOut.from_run(run)
