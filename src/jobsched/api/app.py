"""``create_app``: the REST API as one FastAPI application over a storage and a queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, cast

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.staticfiles import StaticFiles

from jobsched.api.auth import Authenticator, Role, auth_enabled, require, required_role_of
from jobsched.api.cache import JobCache, NullJobCache
from jobsched.api.dependencies import Services
from jobsched.api.job_changes import PayloadRules
from jobsched.api.middleware import (
    BodyLimitMiddleware,
    HeadMiddleware,
    RequestAccountingMiddleware,
)
from jobsched.api.problems import PROBLEM_CONTENT_TYPE, install_problem_handlers
from jobsched.api.request_checks import CheckedRoute
from jobsched.api.routes import access, health, jobs, runs, schedules, workers
from jobsched.api.schemas import Problem, ProblemFieldError
from jobsched.api.ui import install_ui
from jobsched.config.settings import Settings
from jobsched.queue.base import RunQueue
from jobsched.storage.base import Storage

DESCRIPTION = (
    "Define jobs (a handler type, a JSON payload and a cron, interval or one-time "
    "schedule), trigger them, and follow their runs. Errors are RFC 9457 "
    "`application/problem+json` documents naming the field at fault."
)


def _version() -> str:
    try:
        return metadata.version("jobsched")
    except metadata.PackageNotFoundError:  # running from a source tree without installing
        return "0.0.0"


def create_app(
    storage: Storage,
    queue: RunQueue,
    settings: Settings,
    *,
    readiness_checks: Sequence[Callable[[], Awaitable[None]]] = (),
    cache: JobCache | None = None,
    on_jobs_changed: Callable[[], None] | None = None,
) -> FastAPI:
    """Build the API over open ``storage`` and ``queue``.

    The caller owns both and closes them after the app stops; the app never opens
    or closes anything. ``readiness_checks`` are awaited by ``GET /readyz`` after
    the storage ping (a broker ping, say); any exception makes the answer 503.
    ``cache`` (owned and closed by the caller too) serves ``GET /jobs/{id}``; the
    routes that change or delete a job update it after they commit.
    ``on_jobs_changed`` is called after a job is created or rescheduled (standalone
    mode wakes its scheduler with it).
    """
    app = FastAPI(
        title="jobsched",
        version=_version(),
        description=DESCRIPTION,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    enabled = auth_enabled(settings.api.auth, settings.api.host)
    app.state.authenticator = Authenticator(storage, settings.api.auth, enabled=enabled)
    app.state.services = Services(
        storage=storage,
        queue=queue,
        settings=settings,
        cache=cache or NullJobCache(),
        on_jobs_changed=on_jobs_changed or (lambda: None),
        payload_rules=PayloadRules.from_settings(settings),
    )
    app.state.readiness_checks = tuple(readiness_checks)
    install_problem_handlers(app)
    app.router.route_class = CheckedRoute
    # The last one added is the outermost.
    app.add_middleware(HeadMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.api.max_body_bytes,
        max_batch_body_bytes=settings.api.max_batch_body_bytes,
    )
    app.add_middleware(RequestAccountingMiddleware)
    routers = (jobs.router, runs.router, workers.router, schedules.router, access.router)
    for router in routers:
        app.include_router(router)
    metrics_role = Role.READ if settings.api.auth.protect_metrics else None
    app.include_router(health.router_for(metrics_role))
    _serve_documentation(app)
    if settings.api.ui.enabled:
        install_ui(app)
    return app


DOCS_ASSETS = "/docs/assets"
SWAGGER_UI_DIRECTORY = Path(__file__).parent / "static" / "swagger-ui"


def _serve_documentation(app: FastAPI) -> None:
    """``/openapi.json`` and ``/docs``, behind the same auth as the API (role ``read``)."""
    reader = [Depends(require(Role.READ))]

    @app.get("/openapi.json", include_in_schema=False, dependencies=reader)
    async def openapi_document() -> JSONResponse:
        return JSONResponse(openapi_with_roles(app))

    @app.get("/docs", include_in_schema=False, dependencies=reader)
    async def documentation(request: Request) -> HTMLResponse:
        del request
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="jobsched API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )

    # Swagger UI's own files, shipped in the package (static/swagger-ui/VERSION): the
    # page works offline. They are the library's, not data, so they need no token.
    app.mount(DOCS_ASSETS, StaticFiles(directory=SWAGGER_UI_DIRECTORY), name="docs-assets")


def _role_of(dependant: Dependant) -> Role | None:
    for dependency in dependant.dependencies:
        role = required_role_of(dependency.call) or _role_of(dependency)
        if role is not None:
            return role
    return None


def openapi_with_roles(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, each operation naming the role it needs (``x-required-role``)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute):
            continue
        route = cast(Any, context)  # an included route, as FastAPI's own OpenAPI code reads it
        if not route.include_in_schema:
            continue
        role = _role_of(route.dependant)
        for method in route.methods or ():
            operation = document["paths"][route.path_format].get(method.lower())
            if operation is None:
                continue
            _document_problems(operation)
            if role is None:
                operation["security"] = []
                continue
            operation["x-required-role"] = role.value
            operation["description"] = (
                operation.get("description", "") + f"\n\nRequires the `{role.value}` role."
            ).strip()
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.setdefault("Problem", Problem.model_json_schema(ref_template=_SCHEMA_REF))
    schemas.setdefault("ProblemFieldError", ProblemFieldError.model_json_schema())
    app.openapi_schema = document
    return document


_SCHEMA_REF = "#/components/schemas/{model}"
_PROBLEM_CONTENT = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _document_problems(operation: dict[str, Any]) -> None:
    """Every error answer of ``operation`` as what it is: a problem document.

    FastAPI documents its own 422 shape (which the API never answers) and lists the
    ``responses`` models as ``application/json``; any operation may answer 4xx (a
    bad parameter, 401, 405, 413) or 5xx.
    """
    responses = operation.setdefault("responses", {})
    for status in ("4XX", "5XX"):
        responses.setdefault(status, {"description": "An error (application/problem+json)."})
    for status, response in responses.items():
        if not status.startswith(("2", "3")):
            response["content"] = _PROBLEM_CONTENT
