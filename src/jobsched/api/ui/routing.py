"""``UiRoute``: dashboard routes answer their errors as pages, never as JSON problems.

A missing session sends a page request to the login page (a POST gets 401); a
refused CSRF token, role or queue is a 403 page; what storage reports (not found,
conflict, bad input) is a page saying so, with the status the API would answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from starlette.responses import Response

from jobsched.api.ui.sessions import CsrfRefused, LoginRequired, UiForbidden
from jobsched.api.ui.templating import render
from jobsched.core.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    StorageError,
)

logger = logging.getLogger(__name__)

LOGIN_PATH = "/ui/login"


def _error_page(request: Request, status_code: int, title: str, message: str) -> Response:
    return render(
        request,
        None,
        "error.html",
        {"title": title, "message": message, "status_code": status_code},
        status_code=status_code,
    )


async def answer_error(request: Request, error: Exception) -> Response:  # noqa: PLR0911
    if isinstance(error, LoginRequired):
        if request.method == "GET" and request.headers.get("hx-request") is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{LOGIN_PATH}?next={quote(target)}", status_code=303)
        response = _error_page(request, 401, "Signed out", "Sign in again to continue.")
        response.headers["HX-Redirect"] = LOGIN_PATH
        return response
    if isinstance(error, CsrfRefused):
        return _error_page(
            request, 403, "Refused", "The form's CSRF token is missing or wrong; reload the page."
        )
    if isinstance(error, UiForbidden | PermissionDeniedError):
        return _error_page(request, 403, "Not allowed", error.message)
    if isinstance(error, NotFoundError):
        return _error_page(request, 404, "Not found", f"No {error.resource} {error.identifier}.")
    if isinstance(error, ConflictError):
        return _error_page(request, 409, "Not possible now", f"{error.field}: {error.message}")
    if isinstance(error, InvalidInputError):
        return _error_page(request, 422, "Not valid", f"{error.field}: {error.message}")
    if isinstance(error, StorageError):
        logger.warning("dashboard: %s", error)
        return _error_page(request, 503, "Database unavailable", "Try again in a moment.")
    raise error


_HANDLED = (
    LoginRequired,
    CsrfRefused,
    UiForbidden,
    PermissionDeniedError,
    NotFoundError,
    ConflictError,
    InvalidInputError,
    StorageError,
)


class UiRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except _HANDLED as error:
                return await answer_error(request, error)

        return handle
