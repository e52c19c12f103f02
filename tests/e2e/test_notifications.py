"""Failure notifications from real ``jobsched scheduler`` and ``worker`` processes on PostgreSQL.

A real local receiver checks every Standard Webhooks signature. Dead runs are
recorded in the transaction that made them dead, so a receiver that is down, or a
scheduler killed before delivering, loses nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import socket
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from jobsched.core.models import JobSpec, RetryPolicy, RunStatus
from jobsched.storage.database import SQLStorage
from jobsched.storage.schema import webhook_deliveries
from tests.e2e.processes import JobschedProcess
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

E2E_DIRECTORY = Path(__file__).parent
KEY = b"e" * 32
SECRET = "whsec_" + base64.b64encode(KEY).decode()
ONCE = RetryPolicy(max_attempts=1, backoff="fixed", initial_delay_seconds=0, jitter=False)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(database_url: str, endpoints: list[dict[str, object]]) -> dict[str, str]:
    return {
        "JOBSCHED_DATABASE_URL": database_url,
        "JOBSCHED_QUEUE_NAMESPACE": f"notify-{uuid.uuid4().hex[:8]}",
        "JOBSCHED_METRICS_PORT": "0",
        "JOBSCHED_WORKER_QUEUES": '["default", "billing"]',
        "JOBSCHED_WORKER_SHUTDOWN_GRACE_SECONDS": "1",
        "JOBSCHED_NOTIFICATIONS_ENDPOINTS": json.dumps(endpoints),
        "JOBSCHED_NOTIFICATIONS_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "JOBSCHED_NOTIFICATIONS_INITIAL_DELAY_SECONDS": "0.2",
        "JOBSCHED_NOTIFICATIONS_MAX_DELAY_SECONDS": "0.5",
        "JOBSCHED_NOTIFICATIONS_INTERVAL_SECONDS": "0.1",
        "PYTHONPATH": str(E2E_DIRECTORY),
    }


async def _eventually(probe: object, message: str, timeout_seconds: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    while asyncio.get_running_loop().time() < deadline:
        if await probe():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_seconds}s: {message}")


async def _failing_jobs(storage: SQLStorage, queues: list[str]) -> list[uuid.UUID]:
    now = await storage.now()
    jobs = []
    for queue in queues:
        spec = JobSpec(type="always_fails", payload={}, queue=queue, retry=ONCE)
        jobs.append((await storage.create_job(spec, next_run_at=now, now=now)).id)
    return jobs


async def _all_dead(storage: SQLStorage, job_ids: list[uuid.UUID]) -> list[str]:
    dead = []
    for job_id in job_ids:
        page = await storage.list_runs(job_id=job_id, status=RunStatus.DEAD, limit=1, cursor=None)
        dead += [str(run.id) for run in page.items]
    return dead if len(dead) == len(job_ids) else []


def _worker(env: dict[str, str], tmp_path: Path) -> JobschedProcess:
    command = ["worker", "--import", "handlers_for_tests"]
    return JobschedProcess(command, env, tmp_path / "worker.log").start()


async def test_each_dead_run_reaches_each_endpoint_that_wants_it_once(
    postgres_url: str, tmp_path: Path
) -> None:
    everything = WebhookReceiver(KEY).start()
    billing = WebhookReceiver(KEY).start()
    env = _env(
        postgres_url,
        [
            {"url": everything.url, "secret": SECRET},
            {"url": billing.url, "secret": SECRET, "queues": ["billing"]},
            {"url": billing.url + "/other", "secret": SECRET, "types": ["shell"]},
        ],
    )
    storage = SQLStorage.from_url(postgres_url)
    scheduler = JobschedProcess(["scheduler"], env, tmp_path / "scheduler.log").start()
    worker = _worker(env, tmp_path)
    try:
        job_ids = await _failing_jobs(storage, ["default", "default", "billing"])
        dead: list[str] = []

        async def delivered() -> bool:
            dead[:] = await _all_dead(storage, job_ids)
            return bool(dead) and len(everything.events) >= 3 and len(billing.events) >= 1

        await _eventually(delivered, f"3 events delivered:\n{scheduler.log()}")
        await asyncio.sleep(1.0)  # a duplicate would arrive within a few sweeps
    finally:
        worker.stop()
        scheduler.stop()
        everything.stop()
        billing.stop()
        await storage.close()

    assert everything.bad_signatures == billing.bad_signatures == 0
    assert sorted(event["data"]["run_id"] for event in everything.events) == sorted(dead)
    assert [event["data"]["queue"] for event in billing.events] == ["billing"]
    assert {event["type"] for event in everything.events} == {"run.dead"}
    assert "this handler always fails" in everything.events[0]["data"]["error"]


async def test_a_receiver_down_and_a_killed_scheduler_lose_no_event(
    postgres_url: str, tmp_path: Path
) -> None:
    receiver = WebhookReceiver(KEY, _closed_port())
    env = _env(postgres_url, [{"url": receiver.url, "secret": SECRET}])
    storage = SQLStorage.from_url(postgres_url)
    sql = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    scheduler = JobschedProcess(["scheduler"], env, tmp_path / "scheduler.log").start()
    worker = _worker(env, tmp_path)
    try:
        job_ids = await _failing_jobs(storage, ["default", "default"])

        async def tried_and_failed() -> bool:
            with sql.connect() as connection:
                failed = connection.scalar(
                    sa.select(sa.func.count())
                    .select_from(webhook_deliveries)
                    .where(webhook_deliveries.c.attempts >= 1)
                )
            return failed == 2

        await _eventually(tried_and_failed, f"deliveries refused:\n{scheduler.log()}")
        scheduler.stop(signal.SIGKILL)
        receiver.start()
        await asyncio.sleep(0.5)
        assert receiver.events == []  # nobody is delivering now
        scheduler = JobschedProcess(["scheduler"], env, tmp_path / "scheduler-2.log").start()

        async def delivered() -> bool:
            return len(receiver.events) >= 2

        await _eventually(delivered, f"both events delivered:\n{scheduler.log()}")
        await asyncio.sleep(0.5)
        dead = await _all_dead(storage, job_ids)
    finally:
        worker.stop()
        scheduler.stop()
        receiver.stop()
        await storage.close()
        sql.dispose()

    assert receiver.bad_signatures == 0
    assert sorted(event["data"]["run_id"] for event in receiver.events) == sorted(dead)
    assert len(set(receiver.ids)) == 2
