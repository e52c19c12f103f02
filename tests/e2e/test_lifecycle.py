"""The whole job lifecycle through real processes: API, scheduler and worker.

A user creates an ``http`` job over HTTP; the scheduler fires it every 2 s; a
worker calls a real local endpoint; the API lists the succeeded runs and the
worker's ``/metrics`` shows ``jobs_completed`` rising. Once with separate
``api``/``scheduler``/``worker`` processes on PostgreSQL, once with ``standalone``
on SQLite.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from jobsched.storage.database import SQLStorage
from tests.conftest import POSTGRES_ADMIN_URL
from tests.e2e.broker_services import purge_broker_namespace
from tests.e2e.hook_server import HookServer, hook_server
from tests.e2e.processes import JOBSCHED, JobschedProcess, free_port, metric_value, wait_until
from tests.queue_backends import BACKEND_URLS, BACKENDS

pytestmark = pytest.mark.e2e
E2E_DIRECTORY = Path(__file__).parent


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A PostgreSQL database with no schema at all: `jobsched migrate` must make it."""
    name = f"jobsched_e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]


def _create_http_job(api: str, hook: HookServer) -> dict[str, object]:
    response = httpx.post(
        f"{api}/jobs",
        json={"type": "http", "schedule": "@every 2s", "payload": {"url": hook.url}},
    )
    assert response.status_code == 201, response.text
    job: dict[str, object] = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert job["status"] == "active"
    return job


def _check_runs_and_calls(api: str, job_id: object, hook: HookServer) -> None:
    """Succeeded runs are listed 2 s apart, and each call carries its run's identity."""
    wait_until(lambda: len(hook.received()) >= 3, timeout_seconds=30, message="3 hook calls")

    def succeeded_runs() -> list[dict[str, str]]:
        items = httpx.get(f"{api}/jobs/{job_id}/runs").json()["items"]
        return [run for run in items if run["status"] == "succeeded"]

    wait_until(lambda: len(succeeded_runs()) >= 3, timeout_seconds=15, message="3 succeeded runs")
    runs = {run["id"]: run for run in succeeded_runs()}
    fire_times = sorted(datetime.fromisoformat(run["scheduled_for"]) for run in runs.values())
    gaps = {later - earlier for earlier, later in itertools.pairwise(fire_times)}
    assert gaps == {timedelta(seconds=2)}

    calls = [call for call in hook.received() if call["Jobsched-Run-Id"] in runs]
    assert calls, "no hook call carried the id of a succeeded run"
    for call in calls:
        run = runs[call["Jobsched-Run-Id"]]
        assert call["Jobsched-Attempt"] == "1"
        assert call["Jobsched-Scheduled-For"].endswith("Z")
        called_for = datetime.fromisoformat(call["Jobsched-Scheduled-For"])
        assert called_for == datetime.fromisoformat(run["scheduled_for"])
    detail = httpx.get(f"{api}/runs/{calls[0]['Jobsched-Run-Id']}").json()
    assert [attempt["status"] for attempt in detail["attempts"]] == ["succeeded"]
    assert detail["attempts"][0]["result"]["status_code"] == 200


def _completed_count(metrics_url: str) -> float:
    return metric_value(httpx.get(metrics_url).text, "jobs_completed_total", type="http")


@pytest.fixture
def broker_namespace(empty_postgres_url: str) -> Iterator[str]:
    """A broker namespace of this test's own, purged from Redis and RabbitMQ afterwards."""
    namespace = f"e2e-{uuid.uuid4().hex[:12]}"
    yield namespace

    async def purge() -> None:
        storage = SQLStorage.from_url(empty_postgres_url)
        try:
            await purge_broker_namespace(namespace, ["default"], storage)
        finally:
            await storage.close()

    asyncio.run(purge())


@pytest.mark.parametrize("backend", BACKENDS)
def test_separate_processes_on_postgres(
    backend: str, empty_postgres_url: str, broker_namespace: str, tmp_path: Path
) -> None:
    api_port, scheduler_metrics, worker_metrics = free_port(), free_port(), free_port()
    # The hook listens on loopback, which api and worker processes refuse by default.
    config = tmp_path / "config.yaml"
    config.write_text("worker:\n  http:\n    allowed_networks: [127.0.0.0/8]\n")
    env = {
        "JOBSCHED_CONFIG": str(config),
        "JOBSCHED_DATABASE_URL": empty_postgres_url,
        "JOBSCHED_QUEUE_URL": BACKEND_URLS[backend] or "",
        "JOBSCHED_QUEUE_NAMESPACE": broker_namespace,
        "JOBSCHED_API_PORT": str(api_port),
        "JOBSCHED_LOGGING_LEVEL": "DEBUG",
    }
    migrated = subprocess.run(
        [JOBSCHED, "migrate"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "revision" in migrated.stdout

    api_url = f"http://127.0.0.1:{api_port}"
    worker_metrics_url = f"http://127.0.0.1:{worker_metrics}/metrics"
    with hook_server() as hook:
        processes = [
            JobschedProcess(["api"], env, tmp_path / "api.log").start(),
            JobschedProcess(
                ["scheduler"],
                {**env, "JOBSCHED_METRICS_PORT": str(scheduler_metrics)},
                tmp_path / "scheduler.log",
            ).start(),
            JobschedProcess(
                ["worker", "--concurrency", "4"],
                {**env, "JOBSCHED_METRICS_PORT": str(worker_metrics)},
                tmp_path / "worker.log",
            ).start(),
        ]
        try:
            processes[0].wait_for_http(f"{api_url}/readyz")
            processes[1].wait_for_http(f"http://127.0.0.1:{scheduler_metrics}/metrics")
            processes[2].wait_for_http(worker_metrics_url)
            job = _create_http_job(api_url, hook)
            _check_runs_and_calls(api_url, job["id"], hook)
            completed = _completed_count(worker_metrics_url)
            assert completed >= 3
            wait_until(
                lambda: _completed_count(worker_metrics_url) > completed,
                timeout_seconds=10,
                message="jobs_completed rising",
            )
        finally:
            exit_codes = [process.stop() for process in reversed(processes)]
    assert exit_codes == [0, 0, 0], [process.log() for process in processes]


def test_standalone_on_sqlite(tmp_path: Path) -> None:
    api_port = free_port()
    env = {
        "JOBSCHED_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'jobsched.db'}",
        "JOBSCHED_API_PORT": str(api_port),
        "PYTHONPATH": str(E2E_DIRECTORY),
    }
    api_url = f"http://127.0.0.1:{api_port}"
    standalone = JobschedProcess(
        ["standalone", "--import", "handlers_for_tests"], env, tmp_path / "standalone.log"
    ).start()
    try:
        standalone.wait_for_http(f"{api_url}/readyz")
        with hook_server() as hook:
            job = _create_http_job(api_url, hook)
            _check_runs_and_calls(api_url, job["id"], hook)
            completed = _completed_count(f"{api_url}/metrics")
            wait_until(
                lambda: _completed_count(f"{api_url}/metrics") > completed,
                timeout_seconds=10,
                message="jobs_completed rising on the API port",
            )
        _check_retries(api_url)
    finally:
        exit_code = standalone.stop()
    assert exit_code == 0, standalone.log()
    assert (tmp_path / "data" / "jobsched.db").exists()
    # The hook it called is on loopback, which standalone admits, and says so.
    assert "standalone: http jobs may call loopback addresses" in standalone.log()


def _one_time_job_run(api: str, body: dict[str, object]) -> dict[str, object]:
    created = httpx.post(f"{api}/jobs", json=body)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]

    def final_run() -> dict[str, object] | None:
        items = httpx.get(f"{api}/jobs/{job_id}/runs").json()["items"]
        if items and items[0]["status"] in ("succeeded", "dead"):
            run: dict[str, object] = httpx.get(f"{api}/runs/{items[0]['id']}").json()
            return run
        return None

    wait_until(final_run, timeout_seconds=30, message=f"a final run of {body['type']}")
    run = final_run()
    assert run is not None
    return run


def _check_retries(api: str) -> None:
    """Retries through the real worker: two failures then success, dead, and timeout."""
    retry = {"max_attempts": 3, "backoff": "fixed", "initial_delay_seconds": 0.1, "jitter": False}
    flaky = _one_time_job_run(
        api, {"type": "flaky", "payload": {"succeed_on_attempt": 3}, "retry": retry}
    )
    assert flaky["status"] == "succeeded"
    assert flaky["attempt"] == 3
    attempts = flaky["attempts"]
    assert isinstance(attempts, list)
    assert [attempt["status"] for attempt in attempts] == ["failed", "failed", "succeeded"]
    assert "planned failure on attempt 1" in attempts[0]["error"]

    dead = _one_time_job_run(api, {"type": "always_fails", "payload": {}, "retry": retry})
    assert dead["status"] == "dead"
    assert isinstance(dead["attempts"], list)
    assert [attempt["status"] for attempt in dead["attempts"]] == ["failed"] * 3

    sleepy = _one_time_job_run(
        api,
        {
            "type": "sleepy",
            "payload": {"sleep_seconds": 30},
            "timeout_seconds": 0.5,
            "retry": retry,
        },
    )
    assert sleepy["status"] == "succeeded"
    assert isinstance(sleepy["attempts"], list)
    assert [attempt["status"] for attempt in sleepy["attempts"]] == ["timed_out", "succeeded"]
