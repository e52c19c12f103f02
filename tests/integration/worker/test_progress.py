"""Progress reports reach the attempt's row at the worker's heartbeats, while the run runs."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from jobsched.core.errors import StorageError
from jobsched.core.models import AttemptStatus, JsonObject, RunStatus
from jobsched.storage.base import Storage
from jobsched.storage.database import SQLStorage
from jobsched.worker.context import RunContext
from jobsched.worker.registry import HandlerRegistry
from tests.helpers import create_due_run, wait_until
from tests.integration.worker import process_handlers
from tests.integration.worker.conftest import (
    PassThroughStorage,
    StartWorker,
    job_spec,
    succeeded_run,
)


class SteppedHandler:
    """An async handler that reports ``{"step": n}`` and then waits for step ``n`` to be let go."""

    def __init__(self, steps: int) -> None:
        self.let_go = [asyncio.Event() for _ in range(steps)]

    async def __call__(self, payload: JsonObject, context: RunContext) -> JsonObject:
        for step, event in enumerate(self.let_go, start=1):
            await context.report_progress({"step": step})
            await event.wait()
        return {"steps": len(self.let_go)}


async def stored_progress_while_running(
    storage: Storage, run_id: uuid.UUID, expected: JsonObject
) -> bool:
    """Whether the run is still running and its attempt shows ``expected`` as its progress."""
    attempts = await storage.list_attempts(run_id)
    running = (await storage.get_run(run_id)).status is RunStatus.RUNNING
    return running and [(attempt.status, attempt.progress) for attempt in attempts] == [
        (AttemptStatus.RUNNING, expected)
    ]


async def test_progress_is_visible_while_the_run_runs_and_stays_after_it(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    handler = SteppedHandler(steps=2)
    registry.register("stepped", handler)
    run = await create_due_run(storage, job_spec("stepped"))
    await start_worker(registry)

    for step, event in enumerate(handler.let_go, start=1):
        await wait_until(
            functools.partial(stored_progress_while_running, storage, run.id, {"step": step})
        )
        event.set()

    await wait_until(lambda: succeeded_run(storage, run.id))
    (attempt,) = await storage.list_attempts(run.id)
    assert (attempt.result, attempt.progress) == ({"steps": 2}, {"step": 2})


async def test_progress_of_a_process_isolated_handler_is_visible_while_it_runs(
    storage: SQLStorage, start_worker: StartWorker, tmp_path: Path
) -> None:
    registry = HandlerRegistry()
    registry.register("isolated", process_handlers.write_pid_then_sleep, isolation="process")
    pid_file = tmp_path / f"{uuid.uuid4().hex}.pid"
    run = await create_due_run(
        storage, job_spec("isolated", payload={"pid_file": str(pid_file), "sleep_seconds": 60})
    )
    worker = await start_worker(registry)
    await wait_until(pid_file.exists, timeout_seconds=20)
    pid = int(await wait_until(pid_file.read_text))

    await wait_until(lambda: stored_progress_while_running(storage, run.id, {"pid": pid}))

    await storage.cancel_run(run.id)
    await wait_until(lambda: worker.in_flight_count == 0)


class RenewalsWithProgressFailOnce(PassThroughStorage):
    """Real storage whose first renewal carrying progress fails; it notes what each carried."""

    def __init__(self, inner: SQLStorage) -> None:
        super().__init__(inner)
        self.progress_sent: list[dict[tuple[uuid.UUID, int], JsonObject]] = []
        self._failed = False

    async def renew_leases(
        self,
        worker_id: str,
        held: Sequence[tuple[uuid.UUID, int]],
        lease_seconds: float,
        *,
        progress: Mapping[tuple[uuid.UUID, int], JsonObject] | None = None,
    ) -> set[uuid.UUID]:
        self.progress_sent.append(dict(progress or {}))
        if progress and not self._failed:
            self._failed = True
            raise StorageError("database unavailable: connection refused")
        return await self._inner.renew_leases(worker_id, held, lease_seconds, progress=progress)


async def test_progress_is_sent_again_after_a_failed_renewal_and_then_no_more(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    handler = SteppedHandler(steps=1)
    registry.register("stepped", handler)
    flaky = RenewalsWithProgressFailOnce(storage)
    run = await create_due_run(storage, job_spec("stepped"))
    await start_worker(registry, storage=flaky)

    await wait_until(lambda: stored_progress_while_running(storage, run.id, {"step": 1}))
    sent_so_far = len(flaky.progress_sent)
    # Two more beats: the stored report is not sent again.
    await wait_until(lambda: len(flaky.progress_sent) >= sent_so_far + 2)
    handler.let_go[0].set()
    await wait_until(lambda: succeeded_run(storage, run.id))

    key = (run.id, 1)
    carrying = [index for index, sent in enumerate(flaky.progress_sent) if sent]
    assert [flaky.progress_sent[index] for index in carrying] == [{key: {"step": 1}}] * 2
    assert carrying[1] == carrying[0] + 1  # the failed beat's report, at the very next beat
