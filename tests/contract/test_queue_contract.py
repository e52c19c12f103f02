"""The queue contract (``jobsched.queue.base.RunQueue``), one suite for every backend.

Each test runs against the database queue, Redis Streams and RabbitMQ, on a
PostgreSQL database of its own and a broker namespace of its own. What a worker
sees is checked through the contract only; what the database records is checked
through storage.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import timedelta

import pytest
import sqlalchemy as sa

from jobsched.config.settings import QueueSettings
from jobsched.core.errors import StorageError
from jobsched.core.models import AttemptStatus, JobSpec, Run, RunStatus
from jobsched.queue.base import RunQueue
from jobsched.storage.base import AttemptOutcome
from jobsched.storage.database import SQLStorage
from jobsched.storage.schema import runs
from tests.e2e.broker_services import BROKER_SERVICES, port_answers
from tests.e2e.processes import wait_until as wait_until_sync
from tests.helpers import wait_until
from tests.queue_backends import BACKENDS, isolated_queue_settings, open_queue

LEASE_SECONDS = 30.0
CLAIM_WAIT_SECONDS = 2.0


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def storage(postgres_url: str) -> AsyncIterator[SQLStorage]:
    store = SQLStorage.from_url(postgres_url)
    yield store
    await store.close()


@pytest.fixture
def queue_settings() -> QueueSettings:
    return isolated_queue_settings(redis_reclaim_idle_seconds=0.5)


async def _publish_new_run(
    storage: SQLStorage, queue: RunQueue, *, priority: int = 0, queue_name: str = "default"
) -> Run:
    """Commit a due run (unpublished unless the queue is the database), then publish it."""
    run = await _commit_new_run(storage, queue, priority=priority, queue_name=queue_name)
    await queue.publish([run])
    if not queue.commits_are_publishes:
        await storage.mark_published([run.id])
    return run


async def _commit_new_run(
    storage: SQLStorage, queue: RunQueue, *, priority: int = 0, queue_name: str = "default"
) -> Run:
    """Commit a due run of a new job, not yet published (unless the queue is the database)."""
    now = await storage.now()
    job = await storage.create_job(
        JobSpec(type="noop", payload={}, priority=priority, queue=queue_name),
        next_run_at=now + timedelta(days=1),
        now=now,
    )
    return await storage.trigger_job(job.id, published=queue.commits_are_publishes)


async def _claim_one(queue: RunQueue, worker_id: str, queues: Sequence[str] = ("default",)) -> Run:
    async def claimed() -> list[Run]:
        return await queue.claim(worker_id, queues, 1, LEASE_SECONDS, CLAIM_WAIT_SECONDS)

    (run,) = await wait_until(claimed, timeout_seconds=20, message=f"{worker_id} claims a run")
    return run


async def _claims_nothing(queue: RunQueue, worker_id: str) -> bool:
    return await queue.claim(worker_id, ["default"], 10, LEASE_SECONDS, 0.5) == []


async def test_ping_answers_while_the_broker_does(
    backend: str, storage: SQLStorage, queue_settings: QueueSettings
) -> None:
    """Readiness; a broker cut off failing it is shown with real processes (e2e ops tests)."""
    async with open_queue(backend, storage, queue_settings) as queue:
        await queue.ping()
        await queue.ping()  # again, on the same connection


async def test_publish_claim_ack(
    backend: str, storage: SQLStorage, queue_settings: QueueSettings
) -> None:
    async with open_queue(backend, storage, queue_settings) as queue:
        published = await _publish_new_run(storage, queue)
        claimed = await _claim_one(queue, "worker-a")
        assert claimed.id == published.id
        assert claimed.status is RunStatus.RUNNING
        assert claimed.lease_owner == "worker-a"
        assert claimed.attempt == 1
        await queue.ack([claimed])
        assert await _claims_nothing(queue, "worker-b")
        assert sum((await queue.depth()).values()) == 0


async def test_only_the_named_queues_are_served(
    backend: str, storage: SQLStorage, queue_settings: QueueSettings
) -> None:
    async with open_queue(backend, storage, queue_settings) as queue:
        emails = await _publish_new_run(storage, queue, queue_name="emails")
        assert await _claims_nothing(queue, "worker-a")
        claimed = await _claim_one(queue, "worker-a", ["emails"])
        assert claimed.id == emails.id
        await queue.ack([claimed])


async def test_higher_priority_first(
    backend: str, storage: SQLStorage, queue_settings: QueueSettings
) -> None:
    async with open_queue(backend, storage, queue_settings, prefetch_count=1) as queue:
        low = await _publish_new_run(storage, queue, priority=-5)
        normal = await _publish_new_run(storage, queue, priority=0)
        high = await _publish_new_run(storage, queue, priority=5)
        order = []
        for _ in range(3):
            run = await _claim_one(queue, "worker-a")
            order.append(run.id)
            await queue.ack([run])
        assert order == [high.id, normal.id, low.id]


async def test_duplicate_delivery_is_claimed_once(
    backend: str, storage: SQLStorage, queue_settings: QueueSettings
) -> None:
    async with open_queue(backend, storage, queue_settings) as queue:
        run = await _publish_new_run(storage, queue)
        await queue.publish([run])  # the outbox may publish a run twice
        claimed = await _claim_one(queue, "worker-a")
        assert claimed.id == run.id
        assert await _claims_nothing(queue, "worker-b")
        await queue.ack([claimed])
        assert (await storage.get_run(run.id)).attempt == 1
        assert sum((await queue.depth()).values()) == 0


async def test_a_dead_consumers_run_is_rescued_and_delivered_again(
    backend: str, storage: SQLStorage, queue_settings: QueueSettings, postgres_url: str
) -> None:
    """Worker A claims a run and dies without acking; its lease expires; B gets the run."""
    async with open_queue(backend, storage, queue_settings) as queue_b:
        async with open_queue(backend, storage, queue_settings, purge=False) as queue_a:
            run = await _publish_new_run(storage, queue_a)
            taken = await _claim_one(queue_a, "worker-a")
            assert taken.id == run.id
        # A is gone without an ack. Expire its lease rather than wait 30 s for it.
        engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.begin() as connection:
            connection.execute(
                sa.update(runs)
                .where(runs.c.id == run.id)
                .values(lease_expires_at=sa.func.now() - timedelta(seconds=1))
            )
        engine.dispose()
        report = await storage.rescue_expired_leases(10)
        assert [rescued.id for rescued in report.requeued] == [run.id]
        await storage.publish_pending(100, queue_b.publish)
        again = await _claim_one(queue_b, "worker-b")
        assert (again.id, again.attempt, again.lease_owner) == (run.id, 2, "worker-b")
        await queue_b.ack([again])


class _ClaimsFail(SQLStorage):
    """A storage whose claims fail, as for a worker whose database link just died."""

    async def claim_runs(
        self, run_ids: Sequence[uuid.UUID], worker_id: str, lease_seconds: float
    ) -> list[Run]:
        raise StorageError("database unavailable (injected)")

    async def claim_ready_runs(
        self, queues: Sequence[str], limit: int, worker_id: str, lease_seconds: float
    ) -> list[Run]:
        raise StorageError("database unavailable (injected)")


async def test_a_delivery_never_claimed_reaches_another_consumer(
    backend: str, storage: SQLStorage, queue_settings: QueueSettings, postgres_url: str
) -> None:
    """Orphans: A takes a delivery, fails to claim it in the database and dies."""
    failing = _ClaimsFail.from_url(postgres_url)
    try:
        async with open_queue(backend, storage, queue_settings) as queue_b:
            async with open_queue(backend, failing, queue_settings, purge=False) as queue_a:
                run = await _publish_new_run(storage, queue_b)
                with pytest.raises(StorageError):
                    await queue_a.claim(
                        "worker-a", ["default"], 10, LEASE_SECONDS, CLAIM_WAIT_SECONDS
                    )
            claimed = await _claim_one(queue_b, "worker-b")
            assert (claimed.id, claimed.attempt) == (run.id, 1)
            await queue_b.ack([claimed])
    finally:
        await failing.close()


async def test_dead_letter_keeps_the_run_dead(
    backend: str, storage: SQLStorage, queue_settings: QueueSettings
) -> None:
    async with open_queue(backend, storage, queue_settings) as queue:
        await _publish_new_run(storage, queue)
        claimed = await _claim_one(queue, "worker-a")
        (accepted,) = await storage.finish_attempts(
            [
                AttemptOutcome(
                    claimed.id, 1, "worker-a", AttemptStatus.FAILED, RunStatus.DEAD, error="boom"
                )
            ]
        )
        assert accepted
        await queue.dead_letter([claimed])
        assert await _claims_nothing(queue, "worker-b")
        assert (await storage.get_run(claimed.id)).status is RunStatus.DEAD


def _restart_postgresql() -> None:
    version = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True, check=True)
    cluster = sorted(version.stdout.split())[-1]
    subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            cluster,
            "main",
            "restart",
            "--",
            "-m",
            "fast",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _ensure_postgresql() -> None:
    if not port_answers(5432):
        version = subprocess.run(
            ["ls", "/etc/postgresql"], capture_output=True, text=True, check=True
        )
        cluster = sorted(version.stdout.split())[-1]
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "start"],
            check=False,
            capture_output=True,
            timeout=60,
        )
    wait_until_sync(lambda: port_answers(5432), timeout_seconds=60, message="PostgreSQL back")


@pytest.fixture
def restartable_server(backend: str) -> Iterator[str]:
    """The server behind ``backend``; restarted by the test, always running again after it."""
    try:
        yield backend
    finally:
        if backend == "database":
            _ensure_postgresql()
        else:
            BROKER_SERVICES[backend].ensure_running()


@pytest.mark.serial
async def test_reconnects_after_a_server_restart(
    restartable_server: str, storage: SQLStorage, queue_settings: QueueSettings
) -> None:
    """The same queue object keeps working after its server restarted, without being rebuilt."""
    backend = restartable_server
    async with open_queue(backend, storage, queue_settings) as queue:
        first = await _publish_new_run(storage, queue)
        claimed = await _claim_one(queue, "worker-a")
        assert claimed.id == first.id
        await queue.ack([claimed])

        if backend == "database":
            _restart_postgresql()
        else:
            BROKER_SERVICES[backend].restart(outage_seconds=0.5)

        async def committed_again() -> Run | None:
            try:
                return await _commit_new_run(storage, queue)
            except Exception:
                return None

        second = await wait_until(
            committed_again, timeout_seconds=60, message="commit after restart"
        )

        async def published_again() -> bool:
            # As the outbox does: publish the same committed run until the broker takes it.
            # A publish that failed may still have reached the broker: duplicates are fine.
            try:
                await queue.publish([second])
            except Exception:
                return False
            return True

        await wait_until(published_again, timeout_seconds=60, message="publish after restart")
        if await queue.lost_messages_since_last_check():
            # Redis without persistence came back empty: republish what waits.
            await storage.mark_waiting_unpublished()
            await storage.publish_pending(100, queue.publish)

        async def claimed_again() -> list[Run]:
            try:
                return await queue.claim(
                    "worker-a", ["default"], 10, LEASE_SECONDS, CLAIM_WAIT_SECONDS
                )
            except Exception:
                return []

        runs_after = await wait_until(
            claimed_again, timeout_seconds=60, message="claim after restart"
        )
        assert [run.id for run in runs_after] == [second.id]
        await queue.ack(runs_after)
