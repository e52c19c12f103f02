"""``noop``: does nothing and succeeds at once (smoke tests, benchmarks, heartbeats)."""

from __future__ import annotations

from jobsched.core.models import JsonObject
from jobsched.worker.context import RunContext


async def noop_handler(payload: JsonObject, context: RunContext) -> None:
    """Return at once with no result, whatever the payload."""
