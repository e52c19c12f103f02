"""What the dashboard's buttons do: the REST routes' operations, step for step.

Each takes the viewer's ``Principal`` and does what the matching route does with
it: the same validation (``job_changes``), the same role and queue checks, the
same storage call with its audit row, the same cache update and publishing. The
role each needs is checked here, not by the template that shows the button.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from fastapi import Request

from jobsched.api.auth import audit_entry
from jobsched.api.dependencies import Services
from jobsched.api.job_changes import (
    first_run_of,
    patch_edit,
    pause_edit,
    prevalidate_patch,
    resume_edit,
    spec_from_create,
)
from jobsched.api.publishing import publish_committed_run
from jobsched.api.routes.jobs import check_job_allowed
from jobsched.api.schemas import JobCreate, JobPatch
from jobsched.api.ui.sessions import Viewer
from jobsched.core.access import Role
from jobsched.core.models import Job, JsonObject, Run


async def create_job(request: Request, viewer: Viewer, services: Services, body: JobCreate) -> Job:
    viewer.require(Role.WRITE)
    principal = viewer.principal
    spec = spec_from_create(body, services.settings, services.payload_rules)
    check_job_allowed(principal, services, job_type=spec.type, queue=spec.queue)
    now = await services.storage.now()
    audit = audit_entry(
        request, principal, "job.created", fields=tuple(sorted(body.model_fields_set))
    )
    job = await services.storage.create_job(
        spec, next_run_at=first_run_of(spec, now), now=now, audit=audit
    )
    services.on_jobs_changed()
    return job


async def change_job(
    request: Request, viewer: Viewer, services: Services, job_id: uuid.UUID, patch: JobPatch
) -> Job:
    viewer.require(Role.WRITE)
    principal = viewer.principal
    prevalidate_patch(patch)
    now = await services.storage.now()
    edit = patch_edit(patch, now, services.payload_rules)

    def guarded(job: Job) -> Job:
        changed = edit(job)
        if (changed.queue, changed.type) != (job.queue, job.type):
            check_job_allowed(principal, services, job_type=changed.type, queue=changed.queue)
        return changed

    job = await services.storage.update_job(
        job_id,
        guarded,
        queues=principal.queues,
        audit=audit_entry(request, principal, "job.updated"),
    )
    await services.cache.store(job)
    services.on_jobs_changed()
    return job


async def delete_job(
    request: Request, viewer: Viewer, services: Services, job_id: uuid.UUID
) -> None:
    viewer.require(Role.WRITE)
    await services.storage.delete_job(
        job_id,
        queues=viewer.principal.queues,
        audit=audit_entry(request, viewer.principal, "job.deleted"),
    )
    await services.cache.invalidate(job_id)


async def trigger_job(
    request: Request,
    viewer: Viewer,
    services: Services,
    job_id: uuid.UUID,
    payload: JsonObject | None,
) -> Run:
    viewer.require(Role.OPERATE)
    if payload is not None:
        services.payload_rules.check_size(payload)
    run = await services.storage.trigger_job(
        job_id,
        published=services.queue.commits_are_publishes,
        payload=payload,
        queues=viewer.principal.queues,
        audit=audit_entry(
            request,
            viewer.principal,
            "job.triggered",
            fields=("payload",) if payload is not None else (),
        ),
    )
    await publish_committed_run(services, run)
    return run


async def _status_change(
    request: Request,
    viewer: Viewer,
    services: Services,
    job_id: uuid.UUID,
    *,
    action: str,
    edit_of: Callable[..., Callable[[Job], Job]],
) -> Job:
    viewer.require(Role.OPERATE)
    now = await services.storage.now()
    job = await services.storage.update_job(
        job_id,
        edit_of(now),
        queues=viewer.principal.queues,
        audit=audit_entry(request, viewer.principal, action),
    )
    await services.cache.store(job)
    return job


async def pause_job(request: Request, viewer: Viewer, services: Services, job_id: uuid.UUID) -> Job:
    return await _status_change(
        request, viewer, services, job_id, action="job.paused", edit_of=pause_edit
    )


async def resume_job(
    request: Request, viewer: Viewer, services: Services, job_id: uuid.UUID
) -> Job:
    job = await _status_change(
        request, viewer, services, job_id, action="job.resumed", edit_of=resume_edit
    )
    services.on_jobs_changed()
    return job


async def cancel_run(
    request: Request, viewer: Viewer, services: Services, run_id: uuid.UUID
) -> Run:
    viewer.require(Role.OPERATE)
    return await services.storage.cancel_run(
        run_id,
        queues=viewer.principal.queues,
        audit=audit_entry(request, viewer.principal, "run.cancelled"),
    )


async def retry_run(request: Request, viewer: Viewer, services: Services, run_id: uuid.UUID) -> Run:
    viewer.require(Role.OPERATE)
    run = await services.storage.retry_run(
        run_id,
        queues=viewer.principal.queues,
        audit=audit_entry(request, viewer.principal, "run.retried"),
    )
    await publish_committed_run(services, run)
    return run


async def delete_run(
    request: Request, viewer: Viewer, services: Services, run_id: uuid.UUID
) -> None:
    """Delete a finished run with its attempts (the dead-runs page's bulk delete)."""
    viewer.require(Role.WRITE)
    await services.storage.delete_run(
        run_id,
        queues=viewer.principal.queues,
        audit=audit_entry(request, viewer.principal, "run.deleted"),
    )
