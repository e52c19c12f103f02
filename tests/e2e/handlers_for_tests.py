"""Handlers the end-to-end tests load into real workers with ``--import``."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import jobsched


@jobsched.handler("flaky")
async def flaky(payload: dict[str, Any], context: Any) -> dict[str, Any]:
    """Fails until attempt ``payload["succeed_on_attempt"]``."""
    if context.attempt < payload["succeed_on_attempt"]:
        raise RuntimeError(f"planned failure on attempt {context.attempt}")
    return {"succeeded_on_attempt": context.attempt}


@jobsched.handler("always_fails")
def always_fails(payload: dict[str, Any], context: Any) -> None:
    raise ValueError("this handler always fails")


@jobsched.handler("sleepy")
async def sleepy(payload: dict[str, Any], context: Any) -> None:
    """Sleeps past its timeout on the first attempt only."""
    if context.attempt == 1:
        await asyncio.sleep(payload["sleep_seconds"])


@jobsched.handler("short_sleep")
async def short_sleep(payload: dict[str, Any], context: Any) -> None:
    """Sleeps a few milliseconds (between ``payload["min_seconds"]`` and ``["max_seconds"]``).

    Long enough that a worker killed at a random moment is caught mid-run, short
    enough that thousands of runs pass through a few workers in seconds.
    """
    await asyncio.sleep(random.uniform(payload["min_seconds"], payload["max_seconds"]))  # noqa: S311 - not security


@jobsched.handler("chatty")
async def chatty(payload: dict[str, Any], context: Any) -> None:
    """Logs one line through the run's logger."""
    context.logger.info("working on %s", payload["item"])


@jobsched.handler("counting")
async def counting(payload: dict[str, Any], context: Any) -> None:
    """Reports ``{"step": n}`` for each of ``payload["steps"]`` steps of ``["step_seconds"]``."""
    for step in range(1, payload["steps"] + 1):
        await context.report_progress({"step": step})
        await asyncio.sleep(payload["step_seconds"])
