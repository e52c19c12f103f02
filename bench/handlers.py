"""Handlers the benchmarks' workers load (``jobsched worker --import bench.handlers``).

``bench_started_at`` returns the time it started as the run's result, so the
latency benchmark can compare it with the moment the run was triggered. It is
``async``: it runs on the worker's event loop at once, with no hop to a thread,
as a light handler would.
"""

from __future__ import annotations

import time
from typing import Any

import jobsched
from jobsched.worker.context import RunContext

STARTED_AT_TYPE = "bench_started_at"


@jobsched.handler(STARTED_AT_TYPE)
async def started_at(payload: dict[str, Any], context: RunContext) -> dict[str, Any]:
    """The epoch time (``time.time()``) this attempt started: the first thing it does."""
    return {"started_at": time.time()}
