"""``/ui/runs/{id}`` and ``/ui/dead``: a run's attempts, live; cancel, retry, bulk actions."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from jobsched.api.dependencies import ServicesDependency
from jobsched.api.ui import actions
from jobsched.api.ui.forms import checked_form
from jobsched.api.ui.routing import UiRoute
from jobsched.api.ui.sessions import ViewerDependency
from jobsched.api.ui.templating import render, see_after
from jobsched.core.access import Role
from jobsched.core.errors import ConflictError, InvalidInputError, NotFoundError
from jobsched.core.models import Job, RunStatus

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

DEAD_PAGE_SIZE = 50
BULK_MAX = 500
CursorQuery = Annotated[str | None, Query(max_length=500)]


@router.get("/runs/{run_id}")
async def run_page(
    request: Request, run_id: uuid.UUID, viewer: ViewerDependency, services: ServicesDependency
) -> Response:
    run = await services.storage.get_run(run_id)
    if not viewer.principal.sees_queue(run.queue):
        raise NotFoundError("run", run_id)
    attempts = await services.storage.list_attempts(run_id)
    job: Job | None
    try:
        job = await services.storage.get_job(run.job_id)
    except NotFoundError:
        job = None
    context = {
        "run": run,
        "attempts": list(reversed(attempts)),
        "job": job,
        "now": await services.storage.now(),
    }
    fragment = request.headers.get("hx-request") == "true"
    return render(request, viewer, "run_live.html" if fragment else "run.html", context)


@router.post("/runs/{run_id}/cancel")
async def cancel_run(
    request: Request, run_id: uuid.UUID, viewer: ViewerDependency, services: ServicesDependency
) -> Response:
    await checked_form(request, viewer)
    await actions.cancel_run(request, viewer, services, run_id)
    return see_after(f"/ui/runs/{run_id}", "cancelled")


@router.post("/runs/{run_id}/retry")
async def retry_run(
    request: Request, run_id: uuid.UUID, viewer: ViewerDependency, services: ServicesDependency
) -> Response:
    form = await checked_form(request, viewer)
    await actions.retry_run(request, viewer, services, run_id)
    if form.get("back") == "dead":
        return see_after("/ui/dead", "retried")
    return see_after(f"/ui/runs/{run_id}", "retried")


@router.get("/dead")
async def dead_runs_page(
    request: Request,
    viewer: ViewerDependency,
    services: ServicesDependency,
    cursor: CursorQuery = None,
) -> Response:
    found = await services.storage.list_runs(
        job_id=None,
        status=RunStatus.DEAD,
        limit=DEAD_PAGE_SIZE,
        cursor=cursor or None,
        queues=viewer.principal.queues,
    )
    context = {"runs": found.items, "next_cursor": found.next_cursor, "cursor": cursor or ""}
    fragment = request.headers.get("hx-request") == "true"
    return render(request, viewer, "dead_rows.html" if fragment else "dead.html", context)


def _selected_runs(values: list[str]) -> list[uuid.UUID]:
    if not values:
        raise InvalidInputError("run_id", "select at least one run")
    if len(values) > BULK_MAX:
        raise InvalidInputError("run_id", f"at most {BULK_MAX} runs at once")
    try:
        return [uuid.UUID(value) for value in values]
    except ValueError:
        raise InvalidInputError("run_id", "not a run id") from None


@router.post("/dead/{action}")
async def bulk_action(
    request: Request, action: str, viewer: ViewerDependency, services: ServicesDependency
) -> Response:
    """Retry or delete each selected run; one that is no longer dead is left as it is."""
    form = await checked_form(request, viewer)
    if action not in {"retry", "delete"}:
        raise NotFoundError("action", action)
    viewer.require(Role.OPERATE if action == "retry" else Role.WRITE)
    for run_id in _selected_runs(form.get_all("run_id")):
        try:
            if action == "retry":
                await actions.retry_run(request, viewer, services, run_id)
            else:
                await actions.delete_run(request, viewer, services, run_id)
        except (ConflictError, NotFoundError):
            continue  # retried or deleted meanwhile, by someone else
    return see_after("/ui/dead", "bulk-retried" if action == "retry" else "bulk-deleted")
