"""jobsched: a distributed job scheduler.

``jobsched.handler("type")`` registers a handler on the default registry;
``jobsched.Client`` and ``jobsched.AsyncClient`` talk to the REST API. Each is
loaded on first use so that ``import jobsched`` stays cheap for the CLI and API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobsched.client import ApiError, AsyncClient, Client
    from jobsched.transactional import enqueue, enqueue_async, enqueue_many
    from jobsched.worker.registry import handler

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "enqueue",
    "enqueue_async",
    "enqueue_many",
    "handler",
]

_CLIENT_NAMES = frozenset({"ApiError", "AsyncClient", "Client"})


def __getattr__(name: str) -> Any:
    if name == "handler":
        from jobsched.worker.registry import handler  # noqa: PLC0415

        return handler
    if name in ("enqueue", "enqueue_async", "enqueue_many"):
        from jobsched import transactional  # noqa: PLC0415

        return getattr(transactional, name)
    if name in _CLIENT_NAMES:
        from jobsched import client  # noqa: PLC0415

        return getattr(client, name)
    raise AttributeError(f"module 'jobsched' has no attribute {name!r}")
