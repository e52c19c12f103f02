"""``/jobs``: create, read, list, change, delete, trigger, pause and resume jobs.

Reading needs the ``read`` role; trigger, pause and resume ``operate``; create,
change and delete ``write``; ``shell`` jobs ``admin``. A token limited to queues
sees and changes only jobs of those queues. Every change writes its audit row in
its own transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from jobsched.api.auth import Operator, Reader, Writer, audit_entry
from jobsched.api.dependencies import PageDependency, Services, ServicesDependency
from jobsched.api.idempotency import Answer, IdempotencyKey, idempotent
from jobsched.api.job_changes import (
    first_run_of,
    patch_edit,
    pause_edit,
    prevalidate_patch,
    resume_edit,
    spec_from_create,
)
from jobsched.api.publishing import publish_committed_run
from jobsched.api.request_checks import CheckedRoute
from jobsched.api.schemas import (
    PROBLEM_RESPONSES,
    JobBatch,
    JobBatchCreate,
    JobCreate,
    JobOut,
    JobPage,
    JobPatch,
    RunOut,
    TriggerRequest,
)
from jobsched.core.access import Principal, Role
from jobsched.core.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from jobsched.core.models import Job, JobSpec, JobStatus
from jobsched.storage.base import JobFilter

router = APIRouter(
    route_class=CheckedRoute, prefix="/jobs", tags=["jobs"], responses=PROBLEM_RESPONSES
)

JobId = Annotated[uuid.UUID, Path(alias="id", description="The job's id (a UUID).")]

SHELL_TYPE = "shell"


def check_job_allowed(
    principal: Principal, services: Services, *, job_type: str, queue: str, prefix: str = ""
) -> None:
    """Refuse a job the caller may not create or change into (queue, ``shell`` type)."""
    if not principal.sees_queue(queue):
        allowed = ", ".join(sorted(principal.queues or ()))
        raise PermissionDeniedError(
            f"this token may only use the queues {allowed}", field=f"{prefix}queue"
        )
    if job_type != SHELL_TYPE:
        return
    if not principal.role.allows(Role.ADMIN):
        raise PermissionDeniedError(
            f"shell jobs need the admin role; the token has {principal.role.value}",
            field=f"{prefix}type",
        )
    if not services.settings.worker.shell.enabled:
        raise InvalidInputError(
            f"{prefix}type",
            "shell jobs are disabled: set worker.shell.enabled "
            "(JOBSCHED_WORKER_SHELL_ENABLED=true) on the API and the workers",
        )


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a job", response_model=JobOut)
async def create_job(
    body: JobCreate,
    request: Request,
    principal: Writer,
    services: ServicesDependency,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """With an ``Idempotency-Key``, a repeat of the same body gets the first answer."""

    async def create() -> Answer:
        spec = spec_from_create(body, services.settings, services.payload_rules)
        check_job_allowed(principal, services, job_type=spec.type, queue=spec.queue)
        now = await services.storage.now()
        audit = audit_entry(request, principal, "job.created", fields=_given_fields(body))
        job = await services.storage.create_job(
            spec, next_run_at=first_run_of(spec, now), now=now, audit=audit
        )
        services.on_jobs_changed()
        answer = JobOut.from_job(job, services.payload_rules.redaction)
        return Answer(status.HTTP_201_CREATED, answer, f"/jobs/{job.id}")

    return await idempotent(
        key=idempotency_key,
        operation="POST /jobs",
        request=request,
        principal=principal,
        services=services,
        work=create,
    )


def _given_fields(body: JobCreate) -> tuple[str, ...]:
    return tuple(sorted(body.model_fields_set))


@router.post(
    "/batch",
    status_code=status.HTTP_201_CREATED,
    summary="Create many jobs at once",
    response_model=JobBatch,
)
async def create_jobs(
    body: JobBatchCreate,
    request: Request,
    principal: Writer,
    services: ServicesDependency,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """All the jobs are created, or none (the first error names ``jobs.<index>.<field>``)."""

    async def create() -> Answer:
        specs = [_batch_item_spec(index, item, services) for index, item in enumerate(body.jobs)]
        for index, spec in enumerate(specs):
            check_job_allowed(
                principal, services, job_type=spec.type, queue=spec.queue, prefix=f"jobs.{index}."
            )
        _refuse_repeated_names(specs)
        now = await services.storage.now()
        planned = [
            (spec, _batch_item_first_run(index, spec, now)) for index, spec in enumerate(specs)
        ]
        audit = audit_entry(request, principal, "job.created", fields=("batch",))
        created = await services.storage.create_jobs(planned, now=now, audit=audit)
        services.on_jobs_changed()
        redaction = services.payload_rules.redaction
        batch = JobBatch(items=[JobOut.from_job(job, redaction) for job in created])
        return Answer(status.HTTP_201_CREATED, batch)

    return await idempotent(
        key=idempotency_key,
        operation="POST /jobs/batch",
        request=request,
        principal=principal,
        services=services,
        work=create,
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
    *,
    principal: Reader,
    services: ServicesDependency,
    page: PageDependency,
    type: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[JobStatus | None, Query()] = None,
    queue: Annotated[str | None, Query(max_length=200)] = None,
) -> JobPage:
    """Jobs in creation order, filtered by any of ``type``, ``status`` and ``queue``."""
    job_filter = JobFilter(type=type, status=status, queue=queue, queues=principal.queues)
    found = await services.storage.list_jobs(job_filter, limit=page.limit, cursor=page.cursor)
    return JobPage(
        items=[JobOut.from_job(job, services.payload_rules.redaction) for job in found.items],
        next_cursor=found.next_cursor,
    )


async def visible_job(services: Services, principal: Principal, job_id: uuid.UUID) -> Job:
    """The job, from the cache when it holds it; 404 for a job of a queue the caller cannot see."""
    job = await services.cache.get(job_id)
    if job is None:
        job = await services.storage.get_job(job_id)
        # A write that committed since the read above has stored a newer version: this
        # store is then refused, so the cache never goes back to the old one.
        await services.cache.store(job)
    if not principal.sees_queue(job.queue):
        raise NotFoundError("job", job_id)
    return job


@router.get("/{id}", summary="Get a job")
async def get_job(job_id: JobId, principal: Reader, services: ServicesDependency) -> JobOut:
    """From the metadata cache when it holds the job; else from the database, then cached."""
    job = await visible_job(services, principal, job_id)
    return JobOut.from_job(job, services.payload_rules.redaction)


def _guarded(
    edit: Callable[[Job], Job], principal: Principal, services: Services
) -> Callable[[Job], Job]:
    def guarded(job: Job) -> Job:
        changed = edit(job)
        if (changed.queue, changed.type) != (job.queue, job.type):
            check_job_allowed(principal, services, job_type=changed.type, queue=changed.queue)
        return changed

    return guarded


@router.patch("/{id}", summary="Change a job")
async def patch_job(
    job_id: JobId,
    body: JobPatch,
    request: Request,
    principal: Writer,
    services: ServicesDependency,
) -> JobOut:
    """Change the fields given; new timing recomputes ``next_run_at`` from now."""
    prevalidate_patch(body)
    now = await services.storage.now()
    job = await services.storage.update_job(
        job_id,
        _guarded(patch_edit(body, now, services.payload_rules), principal, services),
        queues=principal.queues,
        audit=audit_entry(request, principal, "job.updated"),
    )
    await services.cache.store(job)
    services.on_jobs_changed()
    return JobOut.from_job(job, services.payload_rules.redaction)


@router.delete("/{id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a job")
async def delete_job(
    job_id: JobId, request: Request, principal: Writer, services: ServicesDependency
) -> Response:
    """Delete the job with its runs and their attempts."""
    await services.storage.delete_job(
        job_id, queues=principal.queues, audit=audit_entry(request, principal, "job.deleted")
    )
    await services.cache.invalidate(job_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{id}/trigger",
    status_code=status.HTTP_201_CREATED,
    summary="Run a job now",
    response_model=RunOut,
)
async def trigger_job(
    *,
    job_id: JobId,
    request: Request,
    principal: Operator,
    services: ServicesDependency,
    body: Annotated[TriggerRequest | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Create a manual run, due now, whatever the job's status; its schedule is unchanged.

    A body ``{"payload": {...}}`` replaces the job's payload for this run only. With an
    ``Idempotency-Key``, a repeat of the same body gets the first run, not another.
    """

    async def trigger() -> Answer:
        payload = body.payload if body is not None else None
        if payload is not None:
            services.payload_rules.check_size(payload)
        fields = ("payload",) if payload is not None else ()
        run = await services.storage.trigger_job(
            job_id,
            published=services.queue.commits_are_publishes,
            payload=payload,
            queues=principal.queues,
            audit=audit_entry(request, principal, "job.triggered", fields=fields),
        )
        await publish_committed_run(services, run)
        return Answer(status.HTTP_201_CREATED, RunOut.from_run(run), f"/runs/{run.id}")

    return await idempotent(
        key=idempotency_key,
        operation=f"POST /jobs/{job_id}/trigger",
        request=request,
        principal=principal,
        services=services,
        work=trigger,
    )


@router.post("/{id}/pause", summary="Pause a job")
async def pause_job(
    job_id: JobId, request: Request, principal: Operator, services: ServicesDependency
) -> JobOut:
    """Stop firing the job until it is resumed; pausing a paused job changes nothing."""
    now = await services.storage.now()
    job = await services.storage.update_job(
        job_id,
        pause_edit(now),
        queues=principal.queues,
        audit=audit_entry(request, principal, "job.paused"),
    )
    await services.cache.store(job)
    return JobOut.from_job(job, services.payload_rules.redaction)


@router.post("/{id}/resume", summary="Resume a paused job")
async def resume_job(
    job_id: JobId, request: Request, principal: Operator, services: ServicesDependency
) -> JobOut:
    """Fire again: a recurring job from its next fire time after now, skipping missed ones."""
    now = await services.storage.now()
    job = await services.storage.update_job(
        job_id,
        resume_edit(now),
        queues=principal.queues,
        audit=audit_entry(request, principal, "job.resumed"),
    )
    await services.cache.store(job)
    services.on_jobs_changed()
    return JobOut.from_job(job, services.payload_rules.redaction)
