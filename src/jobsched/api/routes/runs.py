"""``/runs`` and ``/jobs/{id}/runs``: the runs of jobs and their attempts; cancel and retry."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query

from jobsched.api.dependencies import PageDependency, ServicesDependency
from jobsched.api.publishing import publish_committed_run
from jobsched.api.schemas import PROBLEM_RESPONSES, RunDetailOut, RunOut, RunPage
from jobsched.core.models import RunStatus

router = APIRouter(tags=["runs"], responses=PROBLEM_RESPONSES)

RunId = Annotated[uuid.UUID, Path(alias="id", description="The run's id (a UUID).")]
JobId = Annotated[uuid.UUID, Path(alias="id", description="The job's id (a UUID).")]
StatusFilter = Annotated[RunStatus | None, Query(description="Only runs in this status.")]


async def _run_page(
    services: ServicesDependency,
    page: PageDependency,
    job_id: uuid.UUID | None,
    run_status: RunStatus | None,
) -> RunPage:
    found = await services.storage.list_runs(
        job_id=job_id, status=run_status, limit=page.limit, cursor=page.cursor
    )
    return RunPage(
        items=[RunOut.from_run(run) for run in found.items], next_cursor=found.next_cursor
    )


@router.get("/runs", summary="List runs")
async def list_runs(
    services: ServicesDependency, page: PageDependency, status: StatusFilter = None
) -> RunPage:
    """Runs newest fire time first."""
    return await _run_page(services, page, None, status)


@router.get("/jobs/{id}/runs", summary="List a job's runs")
async def list_job_runs(
    job_id: JobId, services: ServicesDependency, page: PageDependency, status: StatusFilter = None
) -> RunPage:
    """The job's runs, newest fire time first; 404 if the job does not exist."""
    await services.storage.get_job(job_id)
    return await _run_page(services, page, job_id, status)


@router.get("/runs/{id}", summary="Get a run with its attempts")
async def get_run(run_id: RunId, services: ServicesDependency) -> RunDetailOut:
    run = await services.storage.get_run(run_id)
    attempts = await services.storage.list_attempts(run_id)
    return RunDetailOut.from_run_and_attempts(run, attempts)


@router.post("/runs/{id}/cancel", summary="Cancel a run")
async def cancel_run(run_id: RunId, services: ServicesDependency) -> RunOut:
    """Cancel a queued, retrying or running run; 409 on ``status`` if it has finished.

    A running run's worker loses its lease: it stops the handler at its next
    heartbeat, and whatever it reports afterwards is refused.
    """
    run = await services.storage.cancel_run(run_id)
    return RunOut.from_run(run)


@router.post("/runs/{id}/retry", summary="Retry a dead or cancelled run")
async def retry_run(run_id: RunId, services: ServicesDependency) -> RunOut:
    """Queue the run again, due now, with as many attempts as it first had.

    409 on ``status`` unless the run is ``dead`` or ``cancelled``. The run is
    committed, then published (or left to the outbox if the broker is down).
    """
    run = await services.storage.retry_run(run_id)
    await publish_committed_run(services, run)
    return RunOut.from_run(run)
