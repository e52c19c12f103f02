"""``/ui/jobs``: the jobs list, a job's page, its actions, and the create and edit forms."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from jobsched.api.dependencies import Services, ServicesDependency
from jobsched.api.request_checks import JSON_DEPTH_DEFAULT, check_json_values
from jobsched.api.routes.jobs import visible_job
from jobsched.api.ui import actions
from jobsched.api.ui.forms import checked_form
from jobsched.api.ui.job_forms import (
    FormInvalid,
    JobFormValues,
    form_field_of,
    job_create_of,
    job_patch_of,
)
from jobsched.api.ui.routing import UiRoute
from jobsched.api.ui.sessions import Viewer, ViewerDependency
from jobsched.api.ui.templating import render, see_after
from jobsched.api.ui.views import is_late, next_fire_times, preview, schedule_words
from jobsched.core.access import Role
from jobsched.core.errors import (
    ConflictError,
    InvalidInputError,
    PermissionDeniedError,
)
from jobsched.core.models import Job, JobStatus, JsonObject
from jobsched.core.redaction import redact_headers
from jobsched.storage.base import JobFilter, JobSort

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

PAGE_SIZE = 50
RUNS_PAGE_SIZE = 20
STRIP_RUNS = 12
TextQuery = Annotated[str | None, Query(max_length=200)]
CursorQuery = Annotated[str | None, Query(max_length=500)]


def _is_fragment(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _job_status(text: str | None) -> JobStatus | None:
    if not text:
        return None
    try:
        return JobStatus(text)
    except ValueError:
        raise InvalidInputError("status", "must be active, paused or completed") from None


def _job_sort(text: str | None) -> JobSort:
    if not text or text == "created":
        return "created"
    if text in {"name", "next_run"}:
        return "name" if text == "name" else "next_run"
    raise InvalidInputError("sort", "must be created, name or next_run")


@router.get("/jobs")
async def jobs_page(
    *,
    request: Request,
    viewer: ViewerDependency,
    services: ServicesDependency,
    q: TextQuery = None,
    type: TextQuery = None,
    queue: TextQuery = None,
    status: TextQuery = None,
    sort: TextQuery = None,
    cursor: CursorQuery = None,
) -> Response:
    order = _job_sort(sort)
    job_filter = JobFilter(
        sort=order,
        search=(q or "").strip() or None,
        type=type or None,
        queue=queue or None,
        status=_job_status(status),
        queues=viewer.principal.queues,
    )
    found = await services.storage.list_jobs(job_filter, limit=PAGE_SIZE, cursor=cursor or None)
    strips = await services.storage.recent_runs_of_jobs([job.id for job in found.items], STRIP_RUNS)
    filters = {
        "q": q or "",
        "type": type or "",
        "queue": queue or "",
        "status": status or "",
        "sort": order,
    }
    context = {
        "jobs": found.items,
        "next_cursor": found.next_cursor,
        "strips": strips,
        "words": schedule_words,
        "filters": filters,
        "cursor": cursor or "",
        "statuses": [status.value for status in JobStatus],
    }
    template = "jobs_rows.html" if _is_fragment(request) else "jobs.html"
    return render(request, viewer, template, context)


@router.get("/jobs/new")
async def new_job_page(request: Request, viewer: ViewerDependency) -> Response:
    viewer.require(Role.WRITE)
    return render(request, viewer, "job_form.html", {"form": JobFormValues.blank(), "job": None})


@router.post("/jobs/new")
async def create_job(
    request: Request, viewer: ViewerDependency, services: ServicesDependency
) -> Response:
    form = await checked_form(request, viewer)
    viewer.require(Role.WRITE)
    values = JobFormValues.of_form(form)
    try:
        job = await actions.create_job(request, viewer, services, job_create_of(values))
    except FormInvalid as invalid:
        values.errors = invalid.errors
    except (InvalidInputError, ConflictError, PermissionDeniedError) as error:
        values.errors = {form_field_of(error.field): error.message}
    else:
        return see_after(f"/ui/jobs/{job.id}", "created")
    return render(request, viewer, "job_form.html", {"form": values, "job": None})


async def _job_context(
    viewer: Viewer, services: Services, job: Job, cursor: str | None
) -> dict[str, object]:
    now = await services.storage.now()
    runs = await services.storage.list_runs(
        job_id=job.id,
        status=None,
        limit=RUNS_PAGE_SIZE,
        cursor=cursor,
        queues=viewer.principal.queues,
    )
    return {
        "job": job,
        "words": schedule_words(job),
        "payload": redact_headers(job.payload, services.payload_rules.redaction),
        "fire_times": next_fire_times(job, now) if job.status is JobStatus.ACTIVE else [],
        "paused_fire_times": next_fire_times(job, now) if job.status is JobStatus.PAUSED else [],
        "runs": runs.items,
        "late": {run.id for run in runs.items if is_late(run, job, services.settings)},
        "next_cursor": runs.next_cursor,
        "cursor": cursor or "",
    }


@router.get("/jobs/{job_id}")
async def job_page(
    *,
    request: Request,
    job_id: uuid.UUID,
    viewer: ViewerDependency,
    services: ServicesDependency,
    cursor: CursorQuery = None,
) -> Response:
    job = await visible_job(services, viewer.principal, job_id)
    context = await _job_context(viewer, services, job, cursor or None)
    template = "job_runs.html" if _is_fragment(request) else "job.html"
    return render(request, viewer, template, context)


def _trigger_payload(text: str) -> JsonObject | None:
    if not text.strip():
        return None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInputError("payload", f"not JSON: {error.msg}") from None
    if not isinstance(payload, dict):
        raise InvalidInputError("payload", "must be a JSON object")
    check_json_values(payload, JSON_DEPTH_DEFAULT, ("payload",))
    return payload


@router.post("/jobs/{job_id}/trigger")
async def trigger_job(
    request: Request, job_id: uuid.UUID, viewer: ViewerDependency, services: ServicesDependency
) -> Response:
    form = await checked_form(request, viewer)
    payload = _trigger_payload(form.get("payload"))
    await actions.trigger_job(request, viewer, services, job_id, payload)
    return see_after(f"/ui/jobs/{job_id}", "triggered")


@router.post("/jobs/{job_id}/pause")
async def pause_job(
    request: Request, job_id: uuid.UUID, viewer: ViewerDependency, services: ServicesDependency
) -> Response:
    await checked_form(request, viewer)
    await actions.pause_job(request, viewer, services, job_id)
    return see_after(f"/ui/jobs/{job_id}", "paused")


@router.post("/jobs/{job_id}/resume")
async def resume_job(
    request: Request, job_id: uuid.UUID, viewer: ViewerDependency, services: ServicesDependency
) -> Response:
    await checked_form(request, viewer)
    await actions.resume_job(request, viewer, services, job_id)
    return see_after(f"/ui/jobs/{job_id}", "resumed")


@router.get("/jobs/{job_id}/delete")
async def delete_job_page(
    request: Request, job_id: uuid.UUID, viewer: ViewerDependency, services: ServicesDependency
) -> Response:
    viewer.require(Role.WRITE)
    job = await visible_job(services, viewer.principal, job_id)
    return render(request, viewer, "job_delete.html", {"job": job})


@router.post("/jobs/{job_id}/delete")
async def delete_job(
    request: Request, job_id: uuid.UUID, viewer: ViewerDependency, services: ServicesDependency
) -> Response:
    await checked_form(request, viewer)
    await actions.delete_job(request, viewer, services, job_id)
    return see_after("/ui/jobs", "deleted")


@router.get("/jobs/{job_id}/edit")
async def edit_job_page(
    request: Request, job_id: uuid.UUID, viewer: ViewerDependency, services: ServicesDependency
) -> Response:
    viewer.require(Role.WRITE)
    job = await visible_job(services, viewer.principal, job_id)
    form = JobFormValues.of_job(job, services.payload_rules.redaction)
    return render(request, viewer, "job_form.html", {"form": form, "job": job})


@router.post("/jobs/{job_id}/edit")
async def edit_job(
    request: Request, job_id: uuid.UUID, viewer: ViewerDependency, services: ServicesDependency
) -> Response:
    form = await checked_form(request, viewer)
    viewer.require(Role.WRITE)
    job = await visible_job(services, viewer.principal, job_id)
    values = JobFormValues.of_form(form)
    try:
        await actions.change_job(request, viewer, services, job_id, job_patch_of(values))
    except FormInvalid as invalid:
        values.errors = invalid.errors
    except (InvalidInputError, ConflictError, PermissionDeniedError) as error:
        values.errors = {form_field_of(error.field): error.message}
    else:
        return see_after(f"/ui/jobs/{job_id}", "saved")
    return render(request, viewer, "job_form.html", {"form": values, "job": job})


@router.get("/schedules/preview")
async def schedule_preview(
    request: Request,
    viewer: ViewerDependency,
    services: ServicesDependency,
    schedule: TextQuery = None,
    timezone: TextQuery = None,
) -> Response:
    """The create form's live preview: the next fire times, or what is wrong."""
    context: dict[str, object] = {"times": [], "error": None, "schedule": schedule or ""}
    if schedule and schedule.strip():
        try:
            now = await services.storage.now()
            context["times"] = preview(schedule, (timezone or "").strip() or "UTC", now)
        except InvalidInputError as error:
            context["error"] = f"{error.field}: {error.message}"
    return render(request, viewer, "schedule_preview.html", context)
