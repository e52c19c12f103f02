"""Workers survive being killed and being stopped: real processes on PostgreSQL.

* A worker SIGKILLed in the middle of 100 long runs: each run's lease expires, the
  scheduler rescues it (the killed worker's attempt ``lost``) and the other worker
  completes it, once.
* A worker sent SIGTERM during 20 runs: the short ones finish within the shutdown
  grace, the long ones are handed back without consuming an attempt, the process
  exits 0 within the grace, and a worker started afterwards completes them as their
  first attempt.

Runs and attempts are read back by SQL: the database is the source of truth.
"""

from __future__ import annotations

import asyncio
import signal
import textwrap
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from jobsched.core.models import JobSpec, RetryPolicy
from jobsched.storage.database import SQLStorage
from jobsched.storage.schema import attempts, runs
from jobsched.storage.urls import parse_database_url
from tests.e2e.processes import JobschedProcess, wait_until
from tests.integration.worker.conftest import process_gone

pytestmark = pytest.mark.e2e

HANDLER_TYPE = "resilience_sleep"
# Loaded by the workers with --import. resilience_sleep sleeps as long as the payload
# says, unless the worker's environment caps it (a worker started to finish what
# another one left); resilience_child sleeps in a child process of its own.
HANDLER_MODULE = textwrap.dedent(
    """
    import asyncio
    import os
    import random
    import time

    import jobsched


    @jobsched.handler("resilience_sleep")
    async def resilience_sleep(payload, context):
        seconds = random.uniform(payload["min_seconds"], payload["max_seconds"])
        cap = os.environ.get("RESILIENCE_SLEEP_CAP_SECONDS")
        if cap is not None:
            seconds = min(seconds, float(cap))
        await asyncio.sleep(seconds)
        return {"worker": os.environ["JOBSCHED_WORKER_ID"], "attempt": context.attempt}


    @jobsched.handler("resilience_child", isolation="process")
    def resilience_child(payload, context):
        with open(payload["pid_file"], "w") as pid_file:
            pid_file.write(str(os.getpid()))
        time.sleep(payload["seconds"])
    """
)
LEASE_SECONDS = 3
HEARTBEAT_INTERVAL_SECONDS = 1
# Enough attempts that a kill never makes a run dead: a dead run would be a bug here.
RETRY = RetryPolicy(max_attempts=5, backoff="fixed", initial_delay_seconds=0, jitter=False)


@pytest.fixture
def sql(postgres_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(parse_database_url(postgres_url).sync_url)
    yield engine
    engine.dispose()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[JobschedProcess]]:
    """Processes the test starts; any still running at the end is killed."""
    started: list[JobschedProcess] = []
    yield started
    for process in started:
        process.stop(signal.SIGKILL)  # only closes the log of one that exited


def base_env(postgres_url: str, module_directory: Path) -> dict[str, str]:
    (module_directory / "resilience_handlers.py").write_text(HANDLER_MODULE)
    return {
        "JOBSCHED_DATABASE_URL": postgres_url,
        "JOBSCHED_METRICS_PORT": "0",
        "JOBSCHED_WORKER_LEASE_SECONDS": str(LEASE_SECONDS),
        "JOBSCHED_WORKER_HEARTBEAT_INTERVAL_SECONDS": str(HEARTBEAT_INTERVAL_SECONDS),
        "JOBSCHED_SCHEDULER_RESCUE_INTERVAL_SECONDS": "0.5",
        "PYTHONPATH": str(module_directory),
    }


def start(
    processes: list[JobschedProcess],
    command: list[str],
    env: Mapping[str, str],
    log_path: Path,
) -> JobschedProcess:
    process = JobschedProcess(command, env, log_path).start()
    processes.append(process)
    return process


def start_worker(
    processes: list[JobschedProcess],
    worker_id: str,
    env: Mapping[str, str],
    log_directory: Path,
    **extra_env: str,
) -> JobschedProcess:
    command = ["worker", "--import", "resilience_handlers", "--concurrency", "100"]
    worker_env = {**env, "JOBSCHED_WORKER_ID": worker_id, **extra_env}
    return start(processes, command, worker_env, log_directory / f"{worker_id}.log")


def create_jobs(
    postgres_url: str, payloads: list[dict[str, Any]], job_type: str = HANDLER_TYPE
) -> None:
    """One-time jobs due now, one per payload; the scheduler process fires them."""

    async def create() -> None:
        storage = SQLStorage.from_url(postgres_url)
        try:
            now = await storage.now()
            for payload in payloads:
                spec = JobSpec(type=job_type, payload=payload, retry=RETRY)
                await storage.create_job(spec, next_run_at=now, now=now)
        finally:
            await storage.close()

    asyncio.run(create())


def running_runs_held_by(sql: sa.Engine, worker_id: str) -> int:
    query = sa.select(sa.func.count()).where(
        runs.c.status == "running", runs.c.lease_owner == worker_id
    )
    with sql.connect() as connection:
        return int(connection.execute(query).scalar_one())


def runs_by_status(sql: sa.Engine) -> dict[str, int]:
    query = sa.select(runs.c.status, sa.func.count()).group_by(runs.c.status)
    with sql.connect() as connection:
        return {status: count for status, count in connection.execute(query).all()}


def attempt_rows(sql: sa.Engine) -> list[Any]:
    query = sa.select(
        attempts.c.run_id, attempts.c.attempt, attempts.c.status, attempts.c.worker_id
    ).order_by(attempts.c.run_id, attempts.c.attempt)
    with sql.connect() as connection:
        return list(connection.execute(query).all())


def attempt_start_times(sql: sa.Engine) -> dict[tuple[Any, int], datetime]:
    query = sa.select(attempts.c.run_id, attempts.c.attempt, attempts.c.started_at)
    with sql.connect() as connection:
        return {(run_id, attempt): at for run_id, attempt, at in connection.execute(query).all()}


def run_payloads(sql: sa.Engine) -> dict[Any, dict[str, Any]]:
    with sql.connect() as connection:
        return dict(connection.execute(sa.select(runs.c.id, runs.c.payload)).all())


def wait_for_all_succeeded(
    sql: sa.Engine, expected: int, alive: list[JobschedProcess], timeout_seconds: float
) -> None:
    def all_succeeded() -> bool:
        for process in alive:
            if process.process.poll() is not None:
                raise AssertionError(f"{process.log_path.name} exited:\n{process.log()}")
        return runs_by_status(sql) == {"succeeded": expected}

    wait_until(
        all_succeeded,
        timeout_seconds=timeout_seconds,
        message=f"{expected} runs succeeded; runs by status now {runs_by_status(sql)}",
    )


def assert_each_run_succeeded_exactly_once(sql: sa.Engine, expected: int) -> list[Any]:
    """Every run has one succeeded attempt, its last; returns the succeeded attempts."""
    rows = attempt_rows(sql)
    succeeded = [row for row in rows if row.status == "succeeded"]
    assert len(succeeded) == expected, f"{len(succeeded)} succeeded attempts for {expected} runs"
    assert len({row.run_id for row in succeeded}) == expected, "a run succeeded twice"
    last_attempt = {row.run_id: row.attempt for row in rows}
    assert all(row.attempt == last_attempt[row.run_id] for row in succeeded)
    assert "running" not in {row.status for row in rows}
    return succeeded


def test_runs_of_a_killed_worker_are_rescued_and_completed_once_elsewhere(
    postgres_url: str, sql: sa.Engine, processes: list[JobschedProcess], tmp_path: Path
) -> None:
    run_count = 100
    env = base_env(postgres_url, tmp_path)
    start(processes, ["scheduler"], env, tmp_path / "scheduler.log")
    victim = start_worker(processes, "worker-a", env, tmp_path)
    create_jobs(postgres_url, [{"min_seconds": 3, "max_seconds": 5}] * run_count)
    wait_until(
        lambda: running_runs_held_by(sql, "worker-a") == run_count,
        timeout_seconds=30,
        message=f"worker-a running all {run_count} runs",
    )
    survivor = start_worker(processes, "worker-b", env, tmp_path)

    victim.stop(signal.SIGKILL)  # mid-run: no goodbye, its leases just stop being renewed

    wait_for_all_succeeded(sql, run_count, [survivor], timeout_seconds=60)
    succeeded = assert_each_run_succeeded_exactly_once(sql, run_count)
    assert {(row.attempt, row.worker_id) for row in succeeded} == {(2, "worker-b")}
    victims_attempts = [row for row in attempt_rows(sql) if row.worker_id == "worker-a"]
    assert len(victims_attempts) == run_count
    assert {(row.attempt, row.status) for row in victims_attempts} == {(1, "lost")}
    # Nothing was taken over before its lease (at least LEASE_SECONDS) expired.
    started = attempt_start_times(sql)
    waits = [started[row.run_id, 2] - started[row.run_id, 1] for row in succeeded]
    assert min(waits) >= timedelta(seconds=LEASE_SECONDS)
    assert survivor.stop() == 0


def test_sigterm_finishes_short_runs_hands_back_long_ones_and_exits_0(
    postgres_url: str, sql: sa.Engine, processes: list[JobschedProcess], tmp_path: Path
) -> None:
    grace_seconds = 3.0
    env = {**base_env(postgres_url, tmp_path), "JOBSCHED_WORKER_SHUTDOWN_GRACE_SECONDS": "3"}
    start(processes, ["scheduler"], env, tmp_path / "scheduler.log")
    stopping = start_worker(processes, "worker-a", env, tmp_path)
    short = {"min_seconds": 1.5, "max_seconds": 1.5, "length": "short"}
    long = {"min_seconds": 60, "max_seconds": 60, "length": "long"}
    create_jobs(postgres_url, [short] * 10 + [long] * 10)
    wait_until(
        lambda: running_runs_held_by(sql, "worker-a") == 20,
        timeout_seconds=30,
        message="worker-a running all 20 runs",
    )

    sent_at = time.monotonic()
    stopping.process.send_signal(signal.SIGTERM)
    exit_code = stopping.process.wait(timeout=grace_seconds + 10)
    stopped_after_seconds = time.monotonic() - sent_at

    log = stopping.log()
    assert exit_code == 0, log
    assert grace_seconds <= stopped_after_seconds < grace_seconds + 3, log
    assert "handed back 10 runs" in log
    assert runs_by_status(sql) == {"succeeded": 10, "queued": 10}

    # Another worker takes the handed-back runs (sleeping 1 s instead of 60).
    finisher = start_worker(processes, "worker-b", env, tmp_path, RESILIENCE_SLEEP_CAP_SECONDS="1")
    wait_for_all_succeeded(sql, 20, [finisher], timeout_seconds=30)
    succeeded = assert_each_run_succeeded_exactly_once(sql, 20)
    payloads = run_payloads(sql)
    by_length = {
        length: {
            (row.attempt, row.worker_id)
            for row in succeeded
            if payloads[row.run_id]["length"] == length
        }
        for length in ("short", "long")
    }
    assert by_length == {"short": {(1, "worker-a")}, "long": {(1, "worker-b")}}
    # The handed-back attempt left no trace: one attempt row per run.
    assert len(attempt_rows(sql)) == 20
    assert finisher.stop() == 0


def test_a_killed_workers_handler_processes_do_not_outlive_it(
    postgres_url: str, sql: sa.Engine, processes: list[JobschedProcess], tmp_path: Path
) -> None:
    """Else a rescued run would execute twice at once: in the orphan and elsewhere."""
    env = base_env(postgres_url, tmp_path)
    start(processes, ["scheduler"], env, tmp_path / "scheduler.log")
    victim = start_worker(processes, "worker-a", env, tmp_path)
    pid_files = [tmp_path / f"child-{index}.pid" for index in range(3)]
    payloads = [{"pid_file": str(pid_file), "seconds": 120} for pid_file in pid_files]
    create_jobs(postgres_url, payloads, job_type="resilience_child")
    wait_until(
        lambda: all(pid_file.exists() and pid_file.read_text() for pid_file in pid_files),
        timeout_seconds=30,
        message="three handler processes started",
    )
    children = [int(pid_file.read_text()) for pid_file in pid_files]
    assert victim.process.pid not in children
    assert not any(process_gone(pid) for pid in children)

    victim.stop(signal.SIGKILL)

    wait_until(
        lambda: all(process_gone(pid) for pid in children),
        timeout_seconds=10,
        message=f"handler processes {children} gone after their worker was killed",
    )
