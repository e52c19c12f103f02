"""Handlers the worker tests register with ``isolation="process"``: module-level, so a child
process can import them by reference."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from jobsched.worker.context import RunContext


class PlannedFailureError(Exception):
    pass


def write_pid_then_sleep(payload: dict[str, Any], context: RunContext) -> dict[str, Any]:
    """Writes its pid to ``payload["pid_file"]``, then sleeps ``payload["sleep_seconds"]``."""
    context.report_progress({"pid": os.getpid()})
    Path(payload["pid_file"]).write_text(str(os.getpid()))
    time.sleep(payload["sleep_seconds"])
    return {"slept": payload["sleep_seconds"]}


def sum_of_squares(payload: dict[str, Any], context: RunContext) -> dict[str, Any]:
    """CPU-bound work; the result says which process did it."""
    total = sum(number * number for number in range(payload["up_to"]))
    context.logger.info("summed squares up to %d in process %d", payload["up_to"], os.getpid())
    return {"total": total, "pid": os.getpid(), "attempt": context.attempt}


def fail_as_planned(payload: dict[str, Any], context: RunContext) -> None:
    context.set_result({"got_to": "the end"})
    raise PlannedFailureError(f"planned failure on attempt {context.attempt}")


def exit_abruptly(payload: dict[str, Any], context: RunContext) -> None:
    os._exit(payload["exit_code"])
