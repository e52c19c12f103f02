"""A worker that cannot renew its leases stops its runs before the leases can expire.

Otherwise the rescuer would hand an expired run to another worker while the first
one still executes it, and the run would complete twice. The stop writes no outcome:
the run is rescued (its attempt ``lost``) once the lease has expired.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime

import pytest

from jobsched.config.settings import WorkerSettings
from jobsched.core.errors import StorageError
from jobsched.core.models import AttemptStatus, JsonObject, RunStatus
from jobsched.queue.database import DatabaseQueue
from jobsched.storage.database import SQLStorage
from jobsched.worker.context import RunContext
from jobsched.worker.registry import HandlerRegistry
from jobsched.worker.service import Worker
from tests.e2e.broker_services import port_answers
from tests.e2e.processes import wait_until as wait_until_sync
from tests.helpers import create_due_run, wait_until
from tests.integration.worker.conftest import (
    EndlessHandler,
    HeldHandler,
    PassThroughStorage,
    StartWorker,
    job_spec,
    metric_value,
    succeeded_run,
)

LEASE_SECONDS = 2.0
HEARTBEAT_INTERVAL_SECONDS = 0.5


def abandoned_count(job_type: str, reason: str) -> float:
    return metric_value("jobs_abandoned_total", type=job_type, queue="default", reason=reason)


class RenewalsFail(PassThroughStorage):
    """Real storage whose lease renewals raise ``StorageError`` once ``failing`` is set.

    Everything else reaches the database: only the heartbeat is cut off, as when the
    database is gone between a worker's claim and its next heartbeat.
    """

    def __init__(self, inner: SQLStorage) -> None:
        super().__init__(inner)
        self.failing = False
        self.renewals_refused = 0

    async def renew_leases(
        self,
        worker_id: str,
        held: Sequence[tuple[uuid.UUID, int]],
        lease_seconds: float,
        *,
        progress: Mapping[tuple[uuid.UUID, int], JsonObject] | None = None,
    ) -> set[uuid.UUID]:
        if self.failing:
            self.renewals_refused += 1
            raise StorageError("database unavailable: connection refused")
        return await self._inner.renew_leases(worker_id, held, lease_seconds, progress=progress)


async def test_run_whose_lease_cannot_be_renewed_is_abandoned_before_it_expires(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    registry = HandlerRegistry()
    entered = asyncio.Event()
    stopped_at: list[datetime] = []

    @registry.handler("cut_off")
    async def cut_off(payload: JsonObject, context: RunContext) -> None:
        entered.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped_at.append(await storage.now())
            raise

    cut_off_storage = RenewalsFail(storage)
    before = abandoned_count("cut_off", "lease_expiring")
    run = await create_due_run(storage, job_spec("cut_off"))
    worker = await start_worker(
        registry,
        storage=cut_off_storage,
        lease_seconds=LEASE_SECONDS,
        heartbeat_interval_seconds=HEARTBEAT_INTERVAL_SECONDS,
    )
    await wait_until(entered.is_set)
    cut_off_storage.failing = True

    await wait_until(lambda: stopped_at, timeout_seconds=LEASE_SECONDS + 3)
    await wait_until(lambda: worker.in_flight_count == 0)
    assert cut_off_storage.renewals_refused >= 1
    current = await storage.get_run(run.id)
    # Stopped while the lease still held, and no outcome written: the run is untouched.
    assert current.lease_expires_at is not None
    assert stopped_at[0] < current.lease_expires_at
    assert (current.status, current.attempt, current.lease_owner) == (
        RunStatus.RUNNING,
        1,
        worker.worker_id,
    )
    assert [a.status for a in await storage.list_attempts(run.id)] == [AttemptStatus.RUNNING]
    assert abandoned_count("cut_off", "lease_expiring") == before + 1

    async def rescued() -> bool:
        return bool((await storage.rescue_expired_leases(10)).requeued)

    await wait_until(rescued, timeout_seconds=LEASE_SECONDS + 3)
    first_attempt = (await storage.list_attempts(run.id))[0]
    assert first_attempt.status is AttemptStatus.LOST


async def test_renewals_failing_for_less_than_the_margin_keep_the_run(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    """A heartbeat or two lost to a blip is not a reason to give up a run."""
    handler = HeldHandler(result={"survived": True})
    registry = HandlerRegistry()
    registry.register("blip", handler)
    flaky = RenewalsFail(storage)
    run = await create_due_run(storage, job_spec("blip"))
    await start_worker(
        registry,
        storage=flaky,
        lease_seconds=LEASE_SECONDS,
        heartbeat_interval_seconds=HEARTBEAT_INTERVAL_SECONDS,
    )
    await wait_until(handler.entered.is_set)
    flaky.failing = True
    await wait_until(lambda: flaky.renewals_refused >= 1)
    flaky.failing = False
    handler.release.set()

    await wait_until(lambda: succeeded_run(storage, run.id))
    (attempt,) = await storage.list_attempts(run.id)
    assert (attempt.status, attempt.result) == (AttemptStatus.SUCCEEDED, {"survived": True})


# --- a real database outage ------------------------------------------------------------


def _postgresql_cluster(action: str) -> None:
    versions = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True, check=True)
    cluster = sorted(versions.stdout.split())[-1]
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", action]
    if action == "stop":
        command += ["--", "-m", "fast"]
    subprocess.run(command, check=action == "stop", capture_output=True, timeout=60)


@pytest.fixture
def stoppable_postgresql() -> Iterator[None]:
    """PostgreSQL, stopped by the test; always running again afterwards."""
    try:
        yield
    finally:
        if not port_answers(5432):
            _postgresql_cluster("start")
        wait_until_sync(lambda: port_answers(5432), timeout_seconds=60, message="PostgreSQL back")


@pytest.mark.serial
async def test_worker_abandons_its_run_while_postgresql_is_down(
    postgres_url: str, stoppable_postgresql: None
) -> None:
    handler = EndlessHandler()
    registry = HandlerRegistry()
    registry.register("outage", handler)
    storage = SQLStorage.from_url(postgres_url)
    settings = WorkerSettings(
        id="worker-outage",
        lease_seconds=LEASE_SECONDS,
        heartbeat_interval_seconds=HEARTBEAT_INTERVAL_SECONDS,
        shutdown_grace_seconds=0,
    )
    worker = Worker(
        storage,
        DatabaseQueue(storage),
        registry,
        settings,
        default_timeout_seconds=None,
        poll_interval_seconds=0.05,
    )
    running = asyncio.create_task(worker.run())
    try:
        run = await create_due_run(storage, job_spec("outage"))
        await wait_until(handler.entered.is_set)
        await asyncio.to_thread(_postgresql_cluster, "stop")

        await wait_until(
            lambda: handler.cancellations_seen == [True], timeout_seconds=LEASE_SECONDS + 5
        )
        await wait_until(lambda: worker.in_flight_count == 0)
        await asyncio.wait_for(worker.stop(), timeout=LEASE_SECONDS * 4)
        await asyncio.to_thread(_postgresql_cluster, "start")

        async def rescued() -> bool:
            try:
                report = await storage.rescue_expired_leases(10)
            except StorageError:  # still starting
                return False
            return [rescued.id for rescued in report.requeued] == [run.id]

        await wait_until(rescued, timeout_seconds=60)
        # No outcome was written while the database was away: the attempt is lost.
        (attempt,) = await storage.list_attempts(run.id)
        assert (attempt.status, attempt.worker_id) == (AttemptStatus.LOST, "worker-outage")
    finally:
        worker.request_stop()
        await asyncio.wait_for(running, timeout=30)
        await storage.close()
