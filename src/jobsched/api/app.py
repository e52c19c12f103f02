"""``create_app``: the REST API as one FastAPI application over a storage and a queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata

from fastapi import FastAPI

from jobsched.api.cache import JobCache, NullJobCache
from jobsched.api.dependencies import Services
from jobsched.api.job_changes import PayloadRules
from jobsched.api.middleware import RequestAccountingMiddleware
from jobsched.api.problems import install_problem_handlers
from jobsched.api.routes import health, jobs, runs, schedules, workers
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
    app = FastAPI(title="jobsched", version=_version(), description=DESCRIPTION)
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
    app.add_middleware(RequestAccountingMiddleware)
    for router in (jobs.router, runs.router, workers.router, schedules.router, health.router):
        app.include_router(router)
    return app
