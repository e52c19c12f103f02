"""``/ui/workers`` and ``/ui/audit`` (admin): who is working, and who changed what."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from jobsched.api.dependencies import ServicesDependency
from jobsched.api.routes.workers import worker_status
from jobsched.api.ui.routing import UiRoute
from jobsched.api.ui.sessions import ViewerDependency
from jobsched.api.ui.templating import render
from jobsched.core.access import Role
from jobsched.core.errors import InvalidInputError
from jobsched.storage.base import AuditFilter

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

AUDIT_PAGE_SIZE = 50
TextQuery = Annotated[str | None, Query(max_length=200)]


@router.get("/workers")
async def workers_page(
    request: Request, viewer: ViewerDependency, services: ServicesDependency
) -> Response:
    """As ``GET /workers``: a queue-scoped token sees the workers of its queues."""
    records = await services.storage.list_workers()
    now = await services.storage.now()
    silence = services.settings.worker.lease_seconds
    queues = viewer.principal.queues
    shown = [
        (record, worker_status(record, now, silence))
        for record in records
        if queues is None or queues.intersection(record.info.queues)
    ]
    context = {
        "workers": shown,
        "now": now,
        "alive": sum(1 for _, state in shown if state == "alive"),
    }
    fragment = request.headers.get("hx-request") == "true"
    return render(request, viewer, "workers_rows.html" if fragment else "workers.html", context)


def _instant(name: str, text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(name, "not a date and time (ISO 8601)") from None
    if moment.tzinfo is None:
        raise InvalidInputError(name, "needs an offset, e.g. 2026-12-04T10:00:00+00:00")
    return moment


@router.get("/audit")
async def audit_page(
    *,
    request: Request,
    viewer: ViewerDependency,
    services: ServicesDependency,
    action: TextQuery = None,
    target_kind: TextQuery = None,
    target_id: TextQuery = None,
    token: TextQuery = None,
    since: TextQuery = None,
    until: TextQuery = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    viewer.require(Role.ADMIN)
    audit_filter = AuditFilter(
        action=action or None,
        target_kind=target_kind or None,
        target_id=target_id or None,
        token_name=token or None,
        since=_instant("since", since),
        until=_instant("until", until),
    )
    found = await services.storage.list_audit(
        audit_filter, limit=AUDIT_PAGE_SIZE, cursor=cursor or None
    )
    filters = {
        "action": action or "",
        "target_kind": target_kind or "",
        "target_id": target_id or "",
        "token": token or "",
        "since": since or "",
        "until": until or "",
    }
    context = {
        "records": found.items,
        "next_cursor": found.next_cursor,
        "cursor": cursor or "",
        "filters": filters,
    }
    return render(request, viewer, "audit.html", context)
