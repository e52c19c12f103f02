"""What the route handlers are given: the services the process owns, found on the app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Query, Request

from jobsched.api.cache import JobCache, NullJobCache
from jobsched.api.job_changes import PayloadRules
from jobsched.config.settings import Settings
from jobsched.core.errors import InvalidInputError
from jobsched.core.network_policy import NetworkPolicy
from jobsched.core.redaction import DEFAULT_REDACTION
from jobsched.queue.base import RunQueue
from jobsched.storage.base import Storage


@dataclass(frozen=True, slots=True)
class Services:
    """Opened and closed by whoever creates the app (the CLI), never by the app."""

    storage: Storage
    queue: RunQueue
    settings: Settings
    cache: JobCache = field(default_factory=NullJobCache)
    # Called after a job is created or its timing changes: wakes an in-process
    # scheduler (standalone on SQLite, which has no NOTIFY). A no-op by default.
    on_jobs_changed: Callable[[], None] = field(default=lambda: None)
    # From settings.worker.http (create_app); by default, nothing private and the
    # default redaction.
    payload_rules: PayloadRules = field(
        default_factory=lambda: PayloadRules(NetworkPolicy(), DEFAULT_REDACTION)
    )


# The dependencies are ``async def`` though they never await: FastAPI runs a plain
# ``def`` dependency in a worker thread, a thread hop on every request.
async def get_services(request: Request) -> Services:
    services = request.app.state.services
    assert isinstance(services, Services), "create_app() stores the services on app.state"
    return services


ServicesDependency = Annotated[Services, Depends(get_services)]


DEFAULT_PAGE_SIZE = 50


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int
    cursor: str | None


async def get_page_request(
    services: ServicesDependency,
    limit: Annotated[
        int | None, Query(ge=1, description="Page size (at most api.page_size_max).")
    ] = None,
    cursor: Annotated[
        str | None, Query(min_length=1, max_length=500, description="A next_cursor from a page.")
    ] = None,
) -> PageRequest:
    """The page a list request asks for; the cursor itself is checked by storage."""
    page_size_max = services.settings.api.page_size_max
    if limit is None:
        limit = min(DEFAULT_PAGE_SIZE, page_size_max)
    elif limit > page_size_max:
        raise InvalidInputError("limit", f"must be at most {page_size_max}")
    return PageRequest(limit=limit, cursor=cursor)


PageDependency = Annotated[PageRequest, Depends(get_page_request)]
