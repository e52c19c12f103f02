"""Writing attempt outcomes, grouping those that end together into one transaction."""

from __future__ import annotations

import asyncio
import contextlib

from jobsched.storage.base import AttemptOutcome, Storage

_Pending = tuple[AttemptOutcome, "asyncio.Future[bool]"]


class OutcomeRecorder:
    """Batches ``storage.finish_attempts``: outcomes submitted while a write is under
    way go together in the next one, so a burst of short runs costs few round trips.
    """

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._pending: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, outcome: AttemptOutcome) -> bool:
        """Whether the outcome was accepted (False: the lease was lost, nothing written).

        Raises what ``finish_attempts`` raised for the batch (``StorageError`` when the
        database is down). Cancelling the caller before the write starts withdraws
        the outcome; after that, it is written all the same.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((outcome, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="jobsched-outcomes")
        return await future

    async def close(self) -> None:
        """Stop writing; outcomes not yet written are dropped (their callers see cancellation)."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()

    async def _write_pending(self) -> None:
        while self._pending:
            batch = [item for item in self._pending if not item[1].done()]
            self._pending.clear()
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[_Pending]) -> None:
        futures = [future for _, future in batch]
        try:
            accepted = await self._storage.finish_attempts([outcome for outcome, _ in batch])
            if len(accepted) != len(futures):
                raise RuntimeError(
                    f"finish_attempts answered {len(accepted)} times for {len(futures)} outcomes"
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
        for future, was_accepted in zip(futures, accepted, strict=True):
            if not future.done():
                future.set_result(was_accepted)
