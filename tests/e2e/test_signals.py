"""Services stop cleanly on a signal at any moment: while starting, and while running."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.e2e.processes import JobschedProcess, free_port

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("delay_seconds", [0.05, 0.3])
def test_sigterm_while_starting_exits_cleanly(
    postgres_url: str, tmp_path: Path, delay_seconds: float
) -> None:
    """A supervisor may stop a process it has just restarted, before it is up."""
    env = {"JOBSCHED_DATABASE_URL": postgres_url, "JOBSCHED_METRICS_PORT": "0"}
    worker = JobschedProcess(["worker"], env, tmp_path / "worker.log").start()
    time.sleep(delay_seconds)  # the moment of the signal, not a synchronisation

    assert worker.stop(signal.SIGTERM) == 0, worker.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_running_api_stops_cleanly_on_a_signal(
    postgres_url: str, tmp_path: Path, sig: signal.Signals
) -> None:
    port = free_port()
    env = {"JOBSCHED_DATABASE_URL": postgres_url, "JOBSCHED_API_PORT": str(port)}
    api = JobschedProcess(["api"], env, tmp_path / "api.log").start()
    api.wait_for_http(f"http://127.0.0.1:{port}/healthz")

    assert api.stop(sig) == 0, api.log()
