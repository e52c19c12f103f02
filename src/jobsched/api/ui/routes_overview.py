"""``/ui/``: the overview, from aggregate queries only, refreshed live."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from jobsched.api.dependencies import ServicesDependency
from jobsched.api.routes.workers import worker_status
from jobsched.api.ui.chart import activity_chart, window_start
from jobsched.api.ui.routing import UiRoute
from jobsched.api.ui.sessions import ViewerDependency
from jobsched.api.ui.templating import render
from jobsched.core.models import RunStatus

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

LATEST_FAILURES = 8


@router.get("/")
async def overview(
    request: Request, viewer: ViewerDependency, services: ServicesDependency
) -> Response:
    storage = services.storage
    queues = viewer.principal.queues
    now = await storage.now()
    counts = await storage.run_status_counts(queues=queues)
    activity = await storage.attempts_per_minute(window_start(now), queues=queues)
    depth = {
        queue: count
        for queue, count in sorted((await storage.ready_run_counts()).items())
        if queues is None or queue in queues
    }
    workers = await storage.list_workers()
    silence = services.settings.worker.lease_seconds
    alive = sum(
        1
        for record in workers
        if worker_status(record, now, silence) == "alive"
        and (queues is None or queues.intersection(record.info.queues))
    )
    failures = await storage.list_runs(
        job_id=None, status=RunStatus.DEAD, limit=LATEST_FAILURES, cursor=None, queues=queues
    )
    earliest = await storage.earliest_next_run_at()
    lag = max(0.0, (now - earliest).total_seconds()) if earliest is not None else 0.0
    context = {
        "counts": [(status.value, counts.get(status.value, 0)) for status in RunStatus],
        "chart": activity_chart(activity, now),
        "depth": depth,
        "alive": alive,
        "failures": failures.items,
        "lag_seconds": lag,
        "next_fire": earliest,
        "now": now,
    }
    fragment = request.headers.get("hx-request") == "true"
    return render(request, viewer, "overview_live.html" if fragment else "overview.html", context)
