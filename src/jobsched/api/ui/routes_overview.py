"""``/ui/``: the overview."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from jobsched.api.ui.routing import UiRoute
from jobsched.api.ui.sessions import ViewerDependency
from jobsched.api.ui.templating import render

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


@router.get("/")
async def overview(request: Request, viewer: ViewerDependency) -> Response:
    return render(request, viewer, "overview.html")
