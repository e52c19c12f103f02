"""A worker's record in the worker registry (what ``GET /workers`` lists).

Registered when the worker starts, kept fresh by every heartbeat (with the number of
runs in progress), marked stopped on a clean stop. The registry is for operators:
every failure is logged and the worker works on regardless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from jobsched.storage.base import Storage, WorkerInfo

logger = logging.getLogger("jobsched.worker")


class WorkerPresence:
    """Keeps ``info()``'s worker registered in ``storage``; each call bounded by a timeout."""

    def __init__(
        self, storage: Storage, info: Callable[[], WorkerInfo], *, timeout_seconds: float
    ) -> None:
        self._storage = storage
        self._info = info
        self._timeout_seconds = timeout_seconds
        self._registered = False

    async def register(self) -> bool:
        """Register (again); whether it worked. A failure is retried at the next heartbeat."""
        try:
            await asyncio.wait_for(
                self._storage.register_worker(self._info()), timeout=self._timeout_seconds
            )
        except Exception as error:  # the registry is for operators; work goes on without it
            _log_failure("register", error)
            return False
        self._registered = True
        return True

    async def heartbeat(self, runs_in_progress: int) -> bool:
        """Note that the worker lives; registers it if it is not (yet, or any more)."""
        if not self._registered:
            return await self.register()
        try:
            known = await asyncio.wait_for(
                self._storage.worker_heartbeat(self._info().id, runs_in_progress),
                timeout=self._timeout_seconds,
            )
        except Exception as error:
            _log_failure("heartbeat", error)
            return False
        if not known:  # the record was pruned (this worker was silent too long)
            self._registered = False
            return await self.register()
        return True

    async def deregister(self) -> None:
        try:
            await asyncio.wait_for(
                self._storage.deregister_worker(self._info().id), timeout=self._timeout_seconds
            )
        except Exception as error:
            _log_failure("deregister", error)


def _log_failure(action: str, error: Exception) -> None:
    detail = str(error) or type(error).__name__
    logger.warning("worker registry %s failed (%s); working on regardless", action, detail)
