"""Grouping the worker's per-run writes (outcomes, acks) that happen together into one call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from jobsched.core.models import Run
from jobsched.queue.base import RunQueue
from jobsched.storage.base import AttemptOutcome, Storage

logger = logging.getLogger("jobsched.worker")

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class Batcher(Generic[Item, Answer]):
    """Calls ``write`` with every item submitted while the previous call was under way.

    A burst of short runs then costs one round trip per batch instead of one per
    run, and a lone run is written at once: nothing waits for a batch to fill.
    ``write`` answers once per item, in order.
    """

    def __init__(
        self, write: Callable[[list[Item]], Awaitable[Sequence[Answer]]], name: str
    ) -> None:
        self._write_batch = write
        self._name = name
        self._pending: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Answer:
        """The answer for ``item``, once its batch is written.

        Raises what ``write`` raised for the batch. Cancelling the caller before the
        write starts withdraws the item; after that, it is written all the same.
        """
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name=self._name)
        return await future

    async def close(self) -> None:
        """Stop writing; items not yet written are dropped (their callers see cancellation)."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()

    async def _write_pending(self) -> None:
        while self._pending:
            batch = [entry for entry in self._pending if not entry[1].done()]
            self._pending.clear()
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[tuple[Item, asyncio.Future[Answer]]]) -> None:
        futures = [future for _, future in batch]
        try:
            answers = await self._write_batch([item for item, _ in batch])
            if len(answers) != len(futures):
                raise RuntimeError(
                    f"{self._name} answered {len(answers)} times for {len(futures)} items"
                )
        except Exception as error:  # handed to every caller to decide
            for future in futures:
                if not future.done():
                    future.set_exception(error)
            return
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        for future, answer in zip(futures, answers, strict=True):
            if not future.done():
                future.set_result(answer)


def outcome_recorder(storage: Storage) -> Batcher[AttemptOutcome, bool]:
    """Batches ``storage.finish_attempts``: whether each outcome was accepted.

    False: the lease was lost, nothing written. ``StorageError`` when the database
    is down.
    """
    return Batcher(storage.finish_attempts, name="jobsched-outcomes")


def delivery_settler(queue: RunQueue, *, dead: bool) -> Batcher[Run, None]:
    """Batches ``queue.ack`` (or ``queue.dead_letter``) of runs whose outcome is committed.

    Never raises for the broker: the outcome is committed already, and a delivery
    left unsettled is redelivered or reclaimed later, refused and settled then.
    One warning per failed batch, not one per run.
    """
    what = "dead-letter" if dead else "ack"
    settle = queue.dead_letter if dead else queue.ack

    async def write(runs: list[Run]) -> list[None]:
        try:
            await settle(runs)
        except Exception as error:
            logger.warning(
                "queue %s of %d runs failed: %s: %s", what, len(runs), type(error).__name__, error
            )
        return [None] * len(runs)

    return Batcher(write, name=f"jobsched-{what}")
