"""Helpers shared by the whole suite: waiting for conditions under a deadline, making due runs."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from jobsched.core.models import JobSpec, Run
from jobsched.core.planning import FirePlan
from jobsched.storage.base import Storage

T = TypeVar("T")


@overload
async def wait_until(
    predicate: Callable[[], Awaitable[T | None]],
    timeout_seconds: float = ...,
    *,
    interval_seconds: float = ...,
    message: str = ...,
) -> T: ...


@overload
async def wait_until(
    predicate: Callable[[], T | None],
    timeout_seconds: float = ...,
    *,
    interval_seconds: float = ...,
    message: str = ...,
) -> T: ...


async def wait_until(
    predicate: Callable[[], Any],
    timeout_seconds: float = 10.0,
    *,
    interval_seconds: float = 0.02,
    message: str = "",
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; return that.

    Fails the test with ``message`` and the last value if the deadline passes first.
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__qualname__", repr(predicate))
            raise AssertionError(
                f"not true within {timeout_seconds}s: {what}; last value {value!r}"
            )
        await asyncio.sleep(interval_seconds)


async def create_due_run(storage: Storage, spec: JobSpec) -> Run:
    """Create a one-time job due now (on a whole second) and fire it as the scheduler would.

    The run is committed as published, as on the database queue.
    """
    now = await storage.now()
    due_at = now.replace(microsecond=0)
    job = await storage.create_job(spec, next_run_at=due_at, now=now)
    fired = await storage.fire_due_jobs(
        now, 100, lambda due: FirePlan([due.next_run_at or due_at], None), published=True
    )
    (run,) = [run for run in fired if run.job_id == job.id]
    return run
