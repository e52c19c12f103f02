"""``jobsched.enqueue``: a run written in the application's own psycopg transaction, on
PostgreSQL, executed by a real ``jobsched worker`` on the database queue."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import jobsched
from jobsched.core.errors import InvalidInputError
from tests.e2e.processes import JobschedProcess, wait_until
from tests.queue_backends import BACKEND_URLS

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture
def worker(postgres_url: str, tmp_path: Path) -> Iterator[JobschedProcess]:
    env = {"JOBSCHED_DATABASE_URL": postgres_url, "JOBSCHED_METRICS_PORT": "0"}
    process = JobschedProcess(["worker"], env, tmp_path / "worker.log").start()
    yield process
    assert process.stop() == 0, process.log()


def _count(url: str, table: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
    assert row is not None
    return int(row[0])


def _run_status(url: str, run_id: object) -> Any:
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT status FROM runs WHERE id = %s", (run_id,)).fetchone()
    return None if row is None else row[0]


def test_a_rollback_leaves_nothing_and_a_commit_runs_it(
    postgres_url: str, worker: JobschedProcess
) -> None:
    with psycopg.connect(postgres_url) as connection:
        connection.execute("CREATE TABLE orders (id int PRIMARY KEY)")
        connection.commit()
        connection.execute("INSERT INTO orders VALUES (1)")
        jobsched.enqueue(connection, "noop", {"order": 1})
        connection.rollback()
    assert (_count(postgres_url, "jobs"), _count(postgres_url, "runs")) == (0, 0)

    with psycopg.connect(postgres_url) as connection:
        connection.execute("INSERT INTO orders VALUES (2)")
        enqueued = jobsched.enqueue(connection, "noop", {"order": 2}, priority=5)
        # Not visible to anyone before the commit.
        assert _run_status(postgres_url, enqueued.run_id) is None
    wait_until(
        lambda: _run_status(postgres_url, enqueued.run_id) == "succeeded",
        timeout_seconds=30,
        message=f"the enqueued run succeeding:\n{worker.log()}",
    )
    assert _count(postgres_url, "orders") == 1


async def test_the_async_connection(postgres_url: str, worker: JobschedProcess) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url) as connection:
        await jobsched.enqueue_async(connection, "noop")
        await connection.rollback()
    assert _count(postgres_url, "runs") == 0
    async with await psycopg.AsyncConnection.connect(postgres_url) as connection:
        enqueued = await jobsched.enqueue_async(connection, "noop", {"a": 1}, queue="default")
    wait_until(
        lambda: _run_status(postgres_url, enqueued.run_id) == "succeeded",
        timeout_seconds=30,
        message=f"the enqueued run succeeding:\n{worker.log()}",
    )


def test_bad_values_are_refused_before_anything_is_written(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as connection:
        for call, field in [
            (lambda: jobsched.enqueue(connection, "no spaces"), "type"),
            (lambda: jobsched.enqueue(connection, "noop", queue=""), "queue"),
            (lambda: jobsched.enqueue(connection, "noop", priority=101), "priority"),
            (lambda: jobsched.enqueue(connection, "noop", {"x": object()}), "payload"),
            (lambda: jobsched.enqueue(connection, "noop", retry={"max_attempts": 0}), "retry"),
        ]:
            with pytest.raises(InvalidInputError) as caught:
                call()
            assert caught.value.field == field
        connection.commit()
    assert _count(postgres_url, "jobs") == 0


def test_an_idempotency_key_makes_one_run(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as connection:
        first = jobsched.enqueue(connection, "noop", {"n": 1}, idempotency_key="order-7")
    with psycopg.connect(postgres_url) as connection:
        again = jobsched.enqueue(connection, "noop", {"n": 1}, idempotency_key="order-7")
        with pytest.raises(InvalidInputError) as caught:
            jobsched.enqueue(connection, "noop", {"n": 2}, idempotency_key="order-7")
    assert (again.run_id, again.replayed, first.replayed) == (first.run_id, True, False)
    assert caught.value.field == "idempotency_key"
    assert _count(postgres_url, "runs") == 1
    # A key whose transaction rolled back was never taken.
    with psycopg.connect(postgres_url) as connection:
        jobsched.enqueue(connection, "noop", idempotency_key="order-8")
        connection.rollback()
        assert not jobsched.enqueue(connection, "noop", idempotency_key="order-8").replayed


def _sqlalchemy_url(postgres_url: str) -> str:
    return postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)


def test_sqlalchemy_connections_and_sessions(postgres_url: str) -> None:
    engine = sa.create_engine(_sqlalchemy_url(postgres_url))
    try:
        with engine.connect() as connection:
            jobsched.enqueue(connection, "noop")
            connection.rollback()
        assert _count(postgres_url, "runs") == 0
        with engine.connect() as connection:
            committed = jobsched.enqueue(connection, "noop", {"via": "connection"})
            connection.commit()
        with Session(engine) as session:
            jobsched.enqueue(session, "noop")
            session.rollback()
        with Session(engine) as session, session.begin():
            in_session = jobsched.enqueue(session, "noop", {"via": "session"})
    finally:
        engine.dispose()
    assert _run_status(postgres_url, committed.run_id) == "queued"
    assert _run_status(postgres_url, in_session.run_id) == "queued"
    assert _count(postgres_url, "runs") == 2


async def test_sqlalchemy_async_connections_and_sessions(postgres_url: str) -> None:
    engine = create_async_engine(_sqlalchemy_url(postgres_url))
    try:
        async with engine.connect() as connection:
            await jobsched.enqueue_async(connection, "noop")
            await connection.rollback()
        async with engine.connect() as connection:
            committed = await jobsched.enqueue_async(connection, "noop")
            await connection.commit()
        async with AsyncSession(engine) as session, session.begin():
            in_session = await jobsched.enqueue_async(session, "noop")
    finally:
        await engine.dispose()
    assert _run_status(postgres_url, committed.run_id) == "queued"
    assert _run_status(postgres_url, in_session.run_id) == "queued"
    assert _count(postgres_url, "runs") == 2


def test_enqueue_many_checks_every_item_first(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as connection:
        with pytest.raises(InvalidInputError) as caught:
            jobsched.enqueue_many(connection, [{"type": "noop"}, {"type": "noop", "priority": 1e9}])
        assert caught.value.field == "priority"
        made = jobsched.enqueue_many(
            connection, [{"type": "noop", "payload": {"i": i}} for i in range(100)]
        )
    assert len({item.run_id for item in made}) == 100
    assert _count(postgres_url, "runs") == 100


def test_anything_else_is_refused() -> None:
    with pytest.raises(TypeError, match="psycopg 3 connection"):
        jobsched.enqueue(object(), "noop")  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["redis", "rabbitmq"])
def test_a_commit_runs_on_a_broker_queue_through_the_outbox(
    postgres_url: str, tmp_path: Path, backend: str
) -> None:
    """With a broker the run waits in the outbox; the scheduler's sweep publishes it."""
    env = {
        "JOBSCHED_DATABASE_URL": postgres_url,
        "JOBSCHED_METRICS_PORT": "0",
        "JOBSCHED_QUEUE_URL": BACKEND_URLS[backend] or "",
        "JOBSCHED_QUEUE_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}",
    }
    processes = [
        JobschedProcess([command], env, tmp_path / f"{command}.log").start()
        for command in ("worker", "scheduler")
    ]
    try:
        with psycopg.connect(postgres_url) as connection:
            enqueued = jobsched.enqueue(connection, "noop", {"via": backend})
        wait_until(
            lambda: _run_status(postgres_url, enqueued.run_id) == "succeeded",
            timeout_seconds=60,
            message="the enqueued run succeeding: "
            + "\n".join(process.log() for process in processes),
        )
    finally:
        codes = [process.stop() for process in processes]
    assert codes == [0, 0], [process.log() for process in processes]
