"""``/jobs``: create, read, list, change, delete, trigger, pause and resume jobs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from jobsched.api.dependencies import PageDependency, Services, ServicesDependency
from jobsched.api.job_changes import (
    first_run_of,
    patch_edit,
    pause_edit,
    prevalidate_patch,
    resume_edit,
    spec_from_create,
)
from jobsched.api.publishing import publish_committed_run
from jobsched.api.schemas import (
    PROBLEM_RESPONSES,
    JobBatch,
    JobBatchCreate,
    JobCreate,
    JobOut,
    JobPage,
    JobPatch,
    RunOut,
)
from jobsched.core.errors import ConflictError, InvalidInputError
from jobsched.core.models import JobSpec, JobStatus
from jobsched.storage.base import JobFilter

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=PROBLEM_RESPONSES)

JobId = Annotated[uuid.UUID, Path(alias="id", description="The job's id (a UUID).")]


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a job")
async def create_job(body: JobCreate, services: ServicesDependency, response: Response) -> JobOut:
    spec = spec_from_create(body, services.settings, services.payload_rules)
    now = await services.storage.now()
    job = await services.storage.create_job(spec, next_run_at=first_run_of(spec, now), now=now)
    services.on_jobs_changed()
    response.headers["Location"] = f"/jobs/{job.id}"
    return JobOut.from_job(job, services.payload_rules.redaction)


@router.post("/batch", status_code=status.HTTP_201_CREATED, summary="Create many jobs at once")
async def create_jobs(body: JobBatchCreate, services: ServicesDependency) -> JobBatch:
    """All the jobs are created, or none (the first error names ``jobs.<index>.<field>``)."""
    specs = [_batch_item_spec(index, item, services) for index, item in enumerate(body.jobs)]
    _refuse_repeated_names(specs)
    now = await services.storage.now()
    planned = [(spec, _batch_item_first_run(index, spec, now)) for index, spec in enumerate(specs)]
    created = await services.storage.create_jobs(planned, now=now)
    services.on_jobs_changed()
    return JobBatch(
        items=[JobOut.from_job(job, services.payload_rules.redaction) for job in created]
    )


def _batch_item_spec(index: int, item: JobCreate, services: Services) -> JobSpec:
    try:
        return spec_from_create(item, services.settings, services.payload_rules)
    except InvalidInputError as error:
        raise InvalidInputError(f"jobs.{index}.{error.field}", error.message) from error


def _batch_item_first_run(index: int, spec: JobSpec, now: datetime) -> datetime:
    try:
        return first_run_of(spec, now)
    except InvalidInputError as error:
        raise InvalidInputError(f"jobs.{index}.{error.field}", error.message) from error


def _refuse_repeated_names(specs: list[JobSpec]) -> None:
    first_index: dict[str, int] = {}
    for index, spec in enumerate(specs):
        if spec.name is None:
            continue
        if spec.name in first_index:
            raise ConflictError(
                f"jobs.{index}.name", f"repeats the name of jobs.{first_index[spec.name]}"
            )
        first_index[spec.name] = index


@router.get("", summary="List jobs")
async def list_jobs(
    services: ServicesDependency,
    page: PageDependency,
    type: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[JobStatus | None, Query()] = None,
    queue: Annotated[str | None, Query(max_length=200)] = None,
) -> JobPage:
    """Jobs in creation order, filtered by any of ``type``, ``status`` and ``queue``."""
    found = await services.storage.list_jobs(
        JobFilter(type=type, status=status, queue=queue), limit=page.limit, cursor=page.cursor
    )
    return JobPage(
        items=[JobOut.from_job(job, services.payload_rules.redaction) for job in found.items],
        next_cursor=found.next_cursor,
    )


@router.get("/{id}", summary="Get a job")
async def get_job(job_id: JobId, services: ServicesDependency) -> JobOut:
    """From the metadata cache when it holds the job; else from the database, then cached."""
    cached = await services.cache.get(job_id)
    if cached is not None:
        return JobOut.from_job(cached, services.payload_rules.redaction)
    job = await services.storage.get_job(job_id)
    # A write that committed since the read above has stored a newer version: this
    # store is then refused, so the cache never goes back to the old one.
    await services.cache.store(job)
    return JobOut.from_job(job, services.payload_rules.redaction)


@router.patch("/{id}", summary="Change a job")
async def patch_job(job_id: JobId, body: JobPatch, services: ServicesDependency) -> JobOut:
    """Change the fields given; new timing recomputes ``next_run_at`` from now."""
    prevalidate_patch(body)
    now = await services.storage.now()
    job = await services.storage.update_job(job_id, patch_edit(body, now, services.payload_rules))
    await services.cache.store(job)
    services.on_jobs_changed()
    return JobOut.from_job(job, services.payload_rules.redaction)


@router.delete("/{id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a job")
async def delete_job(job_id: JobId, services: ServicesDependency) -> Response:
    """Delete the job with its runs and their attempts."""
    await services.storage.delete_job(job_id)
    await services.cache.invalidate(job_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{id}/trigger", status_code=status.HTTP_201_CREATED, summary="Run a job now")
async def trigger_job(job_id: JobId, services: ServicesDependency, response: Response) -> RunOut:
    """Create a manual run, due now, whatever the job's status; its schedule is unchanged."""
    published = services.queue.commits_are_publishes
    run = await services.storage.trigger_job(job_id, published=published)
    await publish_committed_run(services, run)
    response.headers["Location"] = f"/runs/{run.id}"
    return RunOut.from_run(run)


@router.post("/{id}/pause", summary="Pause a job")
async def pause_job(job_id: JobId, services: ServicesDependency) -> JobOut:
    """Stop firing the job until it is resumed; pausing a paused job changes nothing."""
    now = await services.storage.now()
    job = await services.storage.update_job(job_id, pause_edit(now))
    await services.cache.store(job)
    return JobOut.from_job(job, services.payload_rules.redaction)


@router.post("/{id}/resume", summary="Resume a paused job")
async def resume_job(job_id: JobId, services: ServicesDependency) -> JobOut:
    """Fire again: a recurring job from its next fire time after now, skipping missed ones."""
    now = await services.storage.now()
    job = await services.storage.update_job(job_id, resume_edit(now))
    await services.cache.store(job)
    services.on_jobs_changed()
    return JobOut.from_job(job, services.payload_rules.redaction)
