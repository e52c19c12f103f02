"""LISTEN/NOTIFY on PostgreSQL: wake-ups for sleeping schedulers and idle workers.

The triggers of migration 0003 send ``jobsched_jobs`` (payload: the earliest
``next_run_at`` written, as epoch seconds) and ``jobsched_runs`` (payload: a queue
with runs ready now). ``NotificationListener`` keeps one dedicated connection
listening, reconnecting with backoff when it drops; listeners only speed things
up, so callers always keep a bounded sleep or poll as the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql

from jobsched.storage.urls import DatabaseURL

logger = logging.getLogger("jobsched.storage")

JOBS_CHANNEL = "jobsched_jobs"
RUNS_CHANNEL = "jobsched_runs"
_RECONNECT_BACKOFF_MAX_SECONDS = 5.0

NotificationCallback = Callable[[str, str], None]


class NotificationListener:
    """Calls ``on_notification(channel, payload)`` for each NOTIFY on ``channels``."""

    def __init__(
        self,
        database: DatabaseURL,
        channels: Sequence[str],
        on_notification: NotificationCallback,
    ) -> None:
        self._conninfo = database.sync_url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._channels = list(channels)
        self._on_notification = on_notification
        self._task: asyncio.Task[None] | None = None
        # Set while the connection is LISTENing (tests wait on it).
        self.listening = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen_forever(self) -> None:
        backoff_seconds = 0.1
        while True:
            try:
                await self._listen_once()
            except (psycopg.Error, OSError) as error:
                logger.warning("LISTEN connection lost, reconnecting: %s", error)
            await asyncio.sleep(backoff_seconds)
            backoff_seconds = min(backoff_seconds * 2, _RECONNECT_BACKOFF_MAX_SECONDS)

    async def _listen_once(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True
        ) as connection:
            for channel in self._channels:
                await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self.listening.set()
            try:
                # Anything that happened while we were not listening is unknown: wake up.
                for channel in self._channels:
                    self._on_notification(channel, "")
                async for notification in connection.notifies():
                    self._on_notification(notification.channel, notification.payload)
            finally:
                self.listening.clear()
