"""Offering runs the API just committed to workers, as the scheduler's outbox would."""

from __future__ import annotations

import logging

from jobsched.api.dependencies import Services
from jobsched.core.errors import QueueError
from jobsched.core.models import Run

logger = logging.getLogger(__name__)


async def publish_committed_run(services: Services, run: Run) -> None:
    """Publish a committed run now, so a worker takes it without waiting for the outbox.

    On the database queue publishing only wakes this process's claimers. With a
    broker, the run is marked published once the broker took it; if the broker is
    unreachable the run stays unpublished and the scheduler's outbox sweep
    publishes it later, so the request still succeeds. A duplicate publish (the
    sweep got there too) is harmless: claims are conditional.
    """
    queue = services.queue
    try:
        await queue.publish([run])
    except QueueError as error:
        logger.warning("run %s committed but not published yet: %s", run.id, error)
        return
    if not queue.commits_are_publishes:
        await services.storage.mark_published([run.id])
