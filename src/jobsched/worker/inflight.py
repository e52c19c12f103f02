"""The runs a worker is executing, and the reasons it may stop one without an outcome."""

from __future__ import annotations

import asyncio
import enum
import uuid
from dataclasses import dataclass, field

from jobsched.core.models import Run
from jobsched.worker.context import RunContext


class StopReason(enum.StrEnum):
    """Why the worker stopped a run's handler without recording an outcome."""

    # Cancelled through the API: storage already ended the attempt ``cancelled``.
    CANCELLED = "cancelled"
    # The lease renewal left it out: taken over, or rescued after it expired.
    LEASE_LOST = "lease_lost"
    # Its lease could not be renewed (database unreachable) and would soon expire.
    LEASE_EXPIRING = "lease_expiring"
    # The worker is stopping: the run is handed back, or left to its lease expiring.
    SHUTDOWN = "shutdown"


@dataclass(eq=False)
class InFlight:
    """A claimed run this worker is executing.

    ``lease_confirmed_at`` is the event-loop time just before the call that took or
    last renewed the lease: the lease lasts at least ``lease_seconds`` from then.
    ``finishing``: its handler is done and its outcome is being written.
    """

    run: Run
    context: RunContext
    lease_confirmed_at: float
    task: asyncio.Task[None] = field(init=False)
    finishing: bool = False
    stop_reason: StopReason | None = None

    @property
    def key(self) -> tuple[uuid.UUID, int]:
        return (self.run.id, self.run.attempt)

    @property
    def stoppable(self) -> bool:
        """Not stopped already, and not writing its outcome (storage fences that write)."""
        return self.stop_reason is None and not self.finishing

    def stop(self, reason: StopReason, *, even_finishing: bool = False) -> bool:
        """Give up on the run: set its cancellation flag, cancel its task; no outcome.

        Whether it was stopped now (False: stopped already, or writing its outcome
        and ``even_finishing`` not given).
        """
        if self.stop_reason is not None or (self.finishing and not even_finishing):
            return False
        self.stop_reason = reason
        self.context.cancelled.set()
        self.task.cancel()
        return True
