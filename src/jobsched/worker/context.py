"""What a handler knows about the run it executes, and what the worker shares with it."""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from jobsched.core.models import Run

if TYPE_CHECKING:
    import httpx

HANDLER_LOGGER_NAME = "jobsched.handler"


@dataclass(frozen=True, slots=True)
class WorkerResources:
    """Resources one worker creates at start, shares with every handler and closes at stop."""

    http_client: httpx.AsyncClient
    http_response_bytes_max: int


@dataclass(frozen=True, slots=True)
class RunContext:
    """The second argument of every handler: which attempt of which run this is.

    ``cancelled`` is set when the worker gives up on the attempt (its timeout passed,
    its lease was lost, the worker is shutting down). An async handler is cancelled
    as well; a sync handler runs in a thread that cannot be stopped from outside, so
    a long one should check ``is_cancelled()`` now and then and return early.
    """

    run_id: uuid.UUID
    job_id: uuid.UUID
    attempt: int
    scheduled_for: datetime
    type: str
    queue: str
    timeout_seconds: float | None
    logger: logging.LoggerAdapter[logging.Logger]
    resources: WorkerResources | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def for_run(
        cls, run: Run, *, timeout_seconds: float | None, resources: WorkerResources | None
    ) -> RunContext:
        """The context of ``run``'s current attempt; its logger carries run_id and attempt."""
        logger = logging.LoggerAdapter(
            logging.getLogger(HANDLER_LOGGER_NAME),
            {"run_id": str(run.id), "attempt": run.attempt, "job_type": run.job_type},
        )
        return cls(
            run_id=run.id,
            job_id=run.job_id,
            attempt=run.attempt,
            scheduled_for=run.scheduled_for,
            type=run.job_type,
            queue=run.queue,
            timeout_seconds=timeout_seconds,
            logger=logger,
            resources=resources,
        )

    def is_cancelled(self) -> bool:
        """Whether the worker has given up on this attempt; safe to call from any thread."""
        return self.cancelled.is_set()
