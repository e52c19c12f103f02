"""``GET /workers``, ``POST /runs/{id}/cancel`` and ``POST /runs/{id}/retry``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from jobsched.api import create_app
from jobsched.config.settings import Settings, WorkerSettings
from jobsched.core.models import AttemptStatus, ConcurrencyPolicy, OutboxRun, Run, RunStatus
from jobsched.queue import RunQueue, create_queue
from jobsched.queue.database import DatabaseQueue
from jobsched.storage.base import AttemptOutcome, WorkerInfo
from jobsched.storage.database import SQLStorage
from jobsched.storage.schema import workers
from tests.contract.storage_scenario import EPOCH, fire_at, job_spec
from tests.integration.api.api_assertions import assert_no_runs, assert_problem
from tests.integration.api.conftest import BASE_URL
from tests.queue_backends import isolated_queue_settings, open_queue

WORKER_FIELDS = {
    "id",
    "host",
    "pid",
    "queues",
    "handler_types",
    "concurrency",
    "started_at",
    "heartbeat_at",
    "stopped_at",
    "runs_in_progress",
    "status",
}


@asynccontextmanager
async def _client(
    storage: SQLStorage, queue: RunQueue, settings: Settings | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An API client over an app built with its own queue or settings."""
    app = create_app(storage, queue, settings or Settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


def _info(worker_id: str) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id,
        host="host-a",
        pid=4242,
        queues=["default", "emails"],
        handler_types=["http", "noop"],
        concurrency=8,
    )


async def _silence(storage: SQLStorage, sql: sa.Engine, worker_id: str, seconds: float) -> None:
    """Make the worker's last heartbeat ``seconds`` old (database clock)."""
    heartbeat_at = await storage.now() - timedelta(seconds=seconds)
    with sql.begin() as connection:
        connection.execute(
            sa.update(workers).where(workers.c.id == worker_id).values(heartbeat_at=heartbeat_at)
        )


def _by_id(body: dict[str, list[dict[str, object]]]) -> dict[object, dict[str, object]]:
    return {item["id"]: item for item in body["items"]}


async def _ready_run(api: httpx.AsyncClient, max_attempts: int = 3) -> uuid.UUID:
    """A queued manual run of a new job (which itself is not due for a day)."""
    job = await api.post(
        "/jobs",
        json={"type": "noop", "schedule": "@daily", "retry": {"max_attempts": max_attempts}},
    )
    assert job.status_code == 201, job.text
    run = await api.post(f"/jobs/{job.json()['id']}/trigger")
    assert run.status_code == 201, run.text
    return uuid.UUID(run.json()["id"])


async def _running_run(api: httpx.AsyncClient, storage: SQLStorage, max_attempts: int = 3) -> Run:
    run_id = await _ready_run(api, max_attempts)
    (claimed,) = await storage.claim_runs([run_id], "worker-1", 60.0)
    return claimed


async def _ended_run(
    api: httpx.AsyncClient, storage: SQLStorage, run_status: RunStatus, max_attempts: int = 3
) -> Run:
    """A run whose first attempt ended with ``run_status`` (succeeded, retrying or dead)."""
    run = await _running_run(api, storage, max_attempts)
    attempt_status = (
        AttemptStatus.SUCCEEDED if run_status == RunStatus.SUCCEEDED else AttemptStatus.FAILED
    )
    retry_at = run.not_before + timedelta(hours=1) if run_status == RunStatus.RETRYING else None
    outcome = AttemptOutcome(
        run.id, 1, "worker-1", attempt_status, run_status, error="boom", retry_at=retry_at
    )
    assert await storage.finish_attempts([outcome]) == [True]
    return await storage.get_run(run.id)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- GET /workers ----------------------------------------------------------------------


async def test_no_workers_is_an_empty_list(api: httpx.AsyncClient) -> None:
    response = await api.get("/workers")

    assert response.status_code == 200, response.text
    assert response.json() == {"items": []}


async def test_workers_are_listed_with_their_heartbeat_and_whether_they_are_alive(
    api: httpx.AsyncClient, storage: SQLStorage, sql: sa.Engine
) -> None:
    silent = await storage.register_worker(_info("host-a-1"))
    stopped = await storage.register_worker(_info("host-a-2"))
    alive = await storage.register_worker(_info("host-a-3"))
    await storage.worker_heartbeat(alive.info.id, 5)
    await storage.deregister_worker(stopped.info.id)
    await _silence(storage, sql, silent.info.id, Settings().worker.lease_seconds + 5)

    response = await api.get("/workers")

    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [item["id"] for item in items] == ["host-a-3", "host-a-2", "host-a-1"]
    assert all(set(item) == WORKER_FIELDS for item in items)
    listed = _by_id(response.json())
    assert {worker_id: item["status"] for worker_id, item in listed.items()} == {
        "host-a-1": "gone",
        "host-a-2": "gone",
        "host-a-3": "alive",
    }
    shown = listed["host-a-3"]
    assert (shown["host"], shown["pid"], shown["concurrency"]) == ("host-a", 4242, 8)
    assert (shown["queues"], shown["handler_types"]) == (["default", "emails"], ["http", "noop"])
    assert (shown["runs_in_progress"], shown["stopped_at"]) == (5, None)
    assert _time(str(shown["started_at"])) == alive.started_at
    assert _time(str(shown["heartbeat_at"])) >= alive.heartbeat_at
    assert listed["host-a-2"]["stopped_at"] is not None


async def test_workers_are_filtered_by_status(
    api: httpx.AsyncClient, storage: SQLStorage, sql: sa.Engine
) -> None:
    for worker_id in ("host-a-1", "host-a-2", "host-a-3"):
        await storage.register_worker(_info(worker_id))
    await storage.deregister_worker("host-a-2")
    await _silence(storage, sql, "host-a-1", 3600)

    alive = await api.get("/workers", params={"status": "alive"})
    gone = await api.get("/workers", params={"status": "gone"})

    assert alive.status_code == gone.status_code == 200
    assert set(_by_id(alive.json())) == {"host-a-3"}
    assert set(_by_id(gone.json())) == {"host-a-1", "host-a-2"}


async def test_a_worker_is_gone_once_silent_longer_than_the_lease(
    storage: SQLStorage, queue: DatabaseQueue, sql: sa.Engine
) -> None:
    await storage.register_worker(_info("host-a-1"))
    await _silence(storage, sql, "host-a-1", 20)
    short_lease = Settings(worker=WorkerSettings(lease_seconds=10))
    long_lease = Settings(worker=WorkerSettings(lease_seconds=60))

    async with (
        _client(storage, queue, short_lease) as short,
        _client(storage, queue, long_lease) as long,
    ):
        seen_by_short = (await short.get("/workers")).json()["items"][0]["status"]
        seen_by_long = (await long.get("/workers")).json()["items"][0]["status"]

    assert (seen_by_short, seen_by_long) == ("gone", "alive")


async def test_an_unknown_worker_status_filter_is_refused(api: httpx.AsyncClient) -> None:
    response = await api.get("/workers", params={"status": "dead"})

    assert_problem(response, 422, "status")


# --- POST /runs/{id}/cancel --------------------------------------------------------------


async def test_cancel_a_queued_run(
    api: httpx.AsyncClient, storage: SQLStorage, queue: DatabaseQueue
) -> None:
    run_id = await _ready_run(api)

    response = await api.post(f"/runs/{run_id}/cancel")

    assert response.status_code == 200, response.text
    run = response.json()
    assert (run["id"], run["status"]) == (str(run_id), "cancelled")
    assert run["last_error"] == "cancelled by request"
    assert run["finished_at"] is not None
    assert (await api.get(f"/runs/{run_id}")).json()["status"] == "cancelled"
    assert await queue.claim("worker-1", ["default"], 10, 60.0, 0.0) == []


async def test_cancel_a_running_run_ends_its_attempt(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    running = await _running_run(api, storage)

    response = await api.post(f"/runs/{running.id}/cancel")

    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["lease_owner"]) == ("cancelled", None)
    attempts = (await api.get(f"/runs/{running.id}")).json()["attempts"]
    assert [(item["status"], item["error"]) for item in attempts] == [
        ("cancelled", "cancelled by request")
    ]
    assert await storage.renew_leases("worker-1", [(running.id, 1)], 60.0) == set()


@pytest.mark.parametrize("run_status", [RunStatus.SUCCEEDED, RunStatus.DEAD])
async def test_a_finished_run_cannot_be_cancelled_and_is_left_as_it_was(
    run_status: RunStatus, api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    run = await _ended_run(api, storage, run_status)
    attempts = await storage.list_attempts(run.id)

    response = await api.post(f"/runs/{run.id}/cancel")

    problem = assert_problem(response, 409, "status")
    assert run_status.value in problem["detail"]
    assert await storage.get_run(run.id) == run
    assert await storage.list_attempts(run.id) == attempts


async def test_a_run_is_cancelled_once(api: httpx.AsyncClient, storage: SQLStorage) -> None:
    run_id = await _ready_run(api)
    first = await api.post(f"/runs/{run_id}/cancel")
    cancelled = await storage.get_run(run_id)

    second = await api.post(f"/runs/{run_id}/cancel")

    assert first.status_code == 200, first.text
    assert_problem(second, 409, "status")
    assert await storage.get_run(run_id) == cancelled


async def test_cancel_of_an_unknown_run_is_not_found_and_writes_nothing(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    response = await api.post(f"/runs/{uuid.uuid4()}/cancel")

    assert_problem(response, 404, "id")
    await assert_no_runs(storage)


async def test_cancel_of_a_malformed_id_is_refused(api: httpx.AsyncClient) -> None:
    assert_problem(await api.post("/runs/not-a-uuid/cancel"), 422, "id")


# --- POST /runs/{id}/retry ---------------------------------------------------------------


async def test_retry_a_dead_run_with_a_fresh_budget_and_a_worker_takes_it(
    api: httpx.AsyncClient, storage: SQLStorage, queue: DatabaseQueue
) -> None:
    dead = await _ended_run(api, storage, RunStatus.DEAD, max_attempts=1)
    before = await storage.now()

    response = await api.post(f"/runs/{dead.id}/retry")

    after = await storage.now()
    assert response.status_code == 200, response.text
    run = response.json()
    assert (run["status"], run["attempt"], run["max_attempts"]) == ("queued", 1, 2)
    assert (run["finished_at"], run["lease_owner"]) == (None, None)
    assert before - timedelta(seconds=1) <= _time(run["not_before"]) <= after
    (claimed,) = await queue.claim("worker-2", ["default"], 10, 60.0, 0.0)
    assert (claimed.id, claimed.attempt) == (dead.id, 2)


async def test_retry_a_cancelled_run(api: httpx.AsyncClient, storage: SQLStorage) -> None:
    run_id = await _ready_run(api, max_attempts=3)
    assert (await api.post(f"/runs/{run_id}/cancel")).status_code == 200

    response = await api.post(f"/runs/{run_id}/retry")

    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["max_attempts"]) == ("queued", 3)


@pytest.mark.parametrize(
    "run_status", [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.RETRYING, RunStatus.SUCCEEDED]
)
async def test_only_dead_or_cancelled_runs_can_be_retried(
    run_status: RunStatus, api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    if run_status == RunStatus.QUEUED:
        run = await storage.get_run(await _ready_run(api))
    elif run_status == RunStatus.RUNNING:
        run = await _running_run(api, storage)
    else:
        run = await _ended_run(api, storage, run_status)
    attempts = await storage.list_attempts(run.id)

    response = await api.post(f"/runs/{run.id}/retry")

    problem = assert_problem(response, 409, "status")
    assert run_status.value in problem["detail"]
    assert await storage.get_run(run.id) == run
    assert await storage.list_attempts(run.id) == attempts


async def test_retry_of_an_unknown_run_is_not_found_and_writes_nothing(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    response = await api.post(f"/runs/{uuid.uuid4()}/retry")

    assert_problem(response, 404, "id")
    await assert_no_runs(storage)


async def test_retry_publishes_to_a_broker_at_once(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    # Made dead through the database-queue app, so the broker has never heard of it.
    dead = await _ended_run(api, storage, RunStatus.DEAD, max_attempts=1)

    async with (
        open_queue("redis", storage, isolated_queue_settings()) as redis_queue,
        _client(storage, redis_queue) as broker_api,
    ):
        response = await broker_api.post(f"/runs/{dead.id}/retry")
        # No outbox sweep runs here: a delivery can only come from the retry itself.
        claimed = await redis_queue.claim("worker-2", ["default"], 10, 60.0, 5.0)

    assert response.status_code == 200, response.text
    assert [(run.id, run.attempt) for run in claimed] == [(dead.id, 2)]
    assert (await storage.get_run(dead.id)).published_at is not None


async def test_retry_with_the_broker_down_succeeds_and_leaves_the_run_to_the_outbox(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    dead = await _ended_run(api, storage, RunStatus.DEAD, max_attempts=1)
    nothing_listens = isolated_queue_settings(url="redis://127.0.0.1:1/0")
    broken = create_queue(nothing_listens, storage)

    try:
        async with _client(storage, broken) as broker_api:
            response = await broker_api.post(f"/runs/{dead.id}/retry")
    finally:
        await broken.close()

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "queued"
    assert (await storage.get_run(dead.id)).published_at is None
    published: list[OutboxRun] = []

    async def publish(batch: list[OutboxRun]) -> None:
        published.extend(batch)

    assert await storage.publish_pending(10, publish) == 1
    assert [run.id for run in published] == [dead.id]


# --- GET /runs?status= ---------------------------------------------------------------------


async def test_runs_are_listed_by_the_dead_and_skipped_statuses(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    dead = await _ended_run(api, storage, RunStatus.DEAD, max_attempts=1)
    job = await storage.create_job(
        job_spec(concurrency_policy=ConcurrencyPolicy.FORBID),
        next_run_at=EPOCH,
        now=EPOCH - timedelta(days=1),
    )
    fired = await storage.fire_due_jobs(
        EPOCH, 10, fire_at([EPOCH, EPOCH + timedelta(minutes=1)], None), published=True
    )
    (skipped,) = [run for run in fired if run.status == RunStatus.SKIPPED]
    assert skipped.job_id == job.id

    listed_dead = await api.get("/runs", params={"status": "dead"})
    listed_skipped = await api.get("/runs", params={"status": "skipped"})

    assert listed_dead.status_code == listed_skipped.status_code == 200
    assert [item["id"] for item in listed_dead.json()["items"]] == [str(dead.id)]
    assert [item["id"] for item in listed_skipped.json()["items"]] == [str(skipped.id)]
    assert_problem(await api.get("/runs", params={"status": "lost"}), 422, "status")
