"""The web dashboard at ``/ui/``: server-rendered pages (Jinja2) made live with htmx.

It calls storage and the API's own validation directly, under the API's auth: a
browser signs in with a token (``sessions``), and every action checks the token's
role and queues as the REST route for it does. Everything it serves ships in the
package: templates, its own CSS and JavaScript, and htmx vendored from npm.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from jobsched.api.ui import (
    routes_admin,
    routes_auth,
    routes_jobs,
    routes_overview,
    routes_runs,
)
from jobsched.api.ui.security import UiSecurityHeadersMiddleware

STATIC_DIRECTORY = Path(__file__).parent / "static"


def install_ui(app: FastAPI) -> None:
    """Serve the dashboard on ``app`` (``/ui/``, and ``/`` redirecting there)."""
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIRECTORY), name="ui-static")
    for module in (routes_auth, routes_overview, routes_jobs, routes_runs, routes_admin):
        app.include_router(module.router)
    app.include_router(routes_auth.not_found_router)  # last: every other /ui/ path
    app.add_middleware(UiSecurityHeadersMiddleware)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    @app.get("/ui", include_in_schema=False)
    async def ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)
