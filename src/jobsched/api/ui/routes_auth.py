"""``/ui/login`` and ``/ui/logout``: opening a dashboard session with a token, and ending it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from jobsched.api.auth import get_authenticator
from jobsched.api.dependencies import ServicesDependency
from jobsched.api.ui.forms import read_form
from jobsched.api.ui.routing import LOGIN_PATH, UiRoute
from jobsched.api.ui.sessions import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    ViewerDependency,
    anonymous_viewer,
    open_session,
    set_cookie,
)
from jobsched.api.ui.templating import render
from jobsched.core.errors import AuthenticationError, NotFoundError

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a dashboard path: never another site (an open redirect)."""
    if target and target.startswith("/ui/") and not target.startswith("//"):
        return target
    return "/ui/"


@router.get("/login")
async def login_page(
    request: Request, next_path: Annotated[str | None, Query(alias="next")] = None
) -> Response:
    if not get_authenticator(request).enabled:
        return RedirectResponse("/ui/", status_code=303)
    viewer = anonymous_viewer(request, auth_enabled=True)
    return render(request, viewer, "login.html", {"next": _safe_next(next_path)})


@router.post("/login")
async def login(request: Request, services: ServicesDependency) -> Response:
    if not get_authenticator(request).enabled:
        return RedirectResponse("/ui/", status_code=303)
    viewer = anonymous_viewer(request, auth_enabled=True)
    form = await read_form(request)
    viewer.check_csrf(form.get(CSRF_FIELD) or None)
    target = _safe_next(form.get("next"))
    try:
        session_id = await open_session(request, services, form.get("token").strip())
    except AuthenticationError as error:
        return render(
            request,
            viewer,
            "login.html",
            {"next": target, "error": f"Not signed in: {error.reason}."},
        )
    response = RedirectResponse(target, status_code=303)
    set_cookie(
        request,
        response,
        SESSION_COOKIE,
        session_id,
        max_age=services.settings.api.ui.session_seconds,
    )
    return response


@router.post("/logout")
async def logout(
    request: Request, viewer: ViewerDependency, services: ServicesDependency
) -> Response:
    form = await read_form(request)
    viewer.check_csrf(form.get(CSRF_FIELD) or None)
    if viewer.session_hash is not None:
        await services.storage.delete_ui_session(viewer.session_hash)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/ui", httponly=True, samesite="strict")
    return response


not_found_router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


@not_found_router.get("/{path:path}")
async def no_such_page(request: Request, path: str) -> Response:
    """A dashboard path that is no page: a page saying so (the API answers JSON)."""
    raise NotFoundError("page", f"/ui/{path}")
