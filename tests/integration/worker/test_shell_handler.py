"""The built-in ``shell`` handler, run by a real worker: off by default, no shell, bounded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobsched.core.models import AttemptStatus, JobSpec, RunStatus
from jobsched.storage.database import SQLStorage
from jobsched.worker.registry import HandlerRegistry
from tests.helpers import create_due_run, wait_until
from tests.integration.worker.conftest import (
    FAST_RETRY,
    StartWorker,
    final_run,
    job_spec,
    process_gone,
)

ENABLED = {"enabled": True, "env_allowlist": ["PATH", "GREETING"]}


def shell_job(payload: dict[str, Any], **fields: Any) -> JobSpec:
    return job_spec("shell", payload=payload, **fields)


async def test_shell_runs_are_dead_on_a_worker_without_it(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    run = await create_due_run(storage, shell_job({"command": ["true"]}))
    worker_registry = HandlerRegistry()
    await start_worker(worker_registry)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert (done.status, done.attempt) == (RunStatus.DEAD, 1)
    assert done.last_error is not None
    assert done.last_error.startswith("the shell handler is disabled on this worker")
    assert "shell" not in worker_registry


async def test_command_output_and_exit_code_are_the_result(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    payload = {"command": ["sh", "-c", 'echo "out $0"; echo err >&2', "$HOME"]}
    run = await create_due_run(storage, shell_job(payload))
    await start_worker(HandlerRegistry(), shell=ENABLED)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert done.status is RunStatus.SUCCEEDED
    # "$HOME" reached the command as a literal argument: nothing expanded it.
    assert done.result == {
        "exit_code": 0,
        "stdout": "out $HOME\n",
        "stderr": "err\n",
        "stdout_truncated": False,
        "stderr_truncated": False,
    }


async def test_non_zero_exit_fails_with_its_code_and_is_retried(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    payload = {"command": ["sh", "-c", "echo partial; echo 'disk full' >&2; exit 3"]}
    run = await create_due_run(storage, shell_job(payload))
    await start_worker(HandlerRegistry(), shell=ENABLED)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert (done.status, done.attempt) == (RunStatus.DEAD, FAST_RETRY.max_attempts)
    assert done.last_error == "ShellCommandError: command exited with code 3: disk full"
    first = (await storage.list_attempts(run.id))[0]
    assert first.status is AttemptStatus.FAILED
    assert first.result is not None
    assert (first.result["exit_code"], first.result["stdout"]) == (3, "partial\n")


async def test_output_is_cut_to_its_last_bytes(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    payload = {"command": ["sh", "-c", "seq 1 2000"]}
    run = await create_due_run(storage, shell_job(payload))
    small_output = {**ENABLED, "output_bytes_max": 10}
    await start_worker(HandlerRegistry(), shell=small_output)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert done.result is not None
    assert (done.result["stdout"], done.result["stdout_truncated"]) == ("1999\n2000\n", True)


async def test_only_allowlisted_variables_reach_the_command(
    storage: SQLStorage, start_worker: StartWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBSCHED_SECRET_FOR_TEST", "database-password")
    payload = {"command": ["env"], "env": {"GREETING": "bonjour"}}
    run = await create_due_run(storage, shell_job(payload))
    await start_worker(HandlerRegistry(), shell=ENABLED)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert done.status is RunStatus.SUCCEEDED
    assert done.result is not None
    names = {line.split("=", 1)[0] for line in done.result["stdout"].splitlines()}
    assert names <= {"PATH", "GREETING"}
    assert "GREETING=bonjour" in done.result["stdout"]
    assert "database-password" not in done.result["stdout"]


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (
            {"command": ["env"], "env": {"LD_PRELOAD": "./evil.so"}},
            "payload.env.LD_PRELOAD: is not in",
        ),
        ({"command": "rm -rf /"}, "payload.command: must be a non-empty list of strings"),
        ({"command": ["no-such-program-for-jobsched"]}, "CommandNotStartedError: cannot start"),
        ({"command": ["true"], "shell": True}, "payload.shell: unknown key"),
    ],
)
async def test_unusable_payloads_end_dead_at_once(
    storage: SQLStorage, start_worker: StartWorker, payload: dict[str, Any], error: str
) -> None:
    run = await create_due_run(storage, shell_job(payload))
    await start_worker(HandlerRegistry(), shell=ENABLED)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert (done.status, done.attempt) == (RunStatus.DEAD, 1)
    assert done.last_error is not None
    assert error in done.last_error


async def test_command_past_its_timeout_is_killed_with_its_children(
    storage: SQLStorage, start_worker: StartWorker, tmp_path: Path
) -> None:
    pid_file = tmp_path / "grandchild.pid"
    # The shell starts a grandchild and waits for it: both must die at the timeout.
    script = f"sleep 60 & echo $! > {pid_file}; wait"
    payload = {"command": ["sh", "-c", script], "timeout_seconds": 0.5}
    run = await create_due_run(storage, shell_job(payload))
    await start_worker(HandlerRegistry(), shell=ENABLED)

    done = await wait_until(lambda: final_run(storage, run.id), timeout_seconds=15)
    assert done.status is RunStatus.DEAD
    assert done.last_error == "ShellTimeoutError: command timed out after 0.5s and was killed"
    assert process_gone(int(pid_file.read_text()))


async def test_cancelled_command_is_killed_with_its_children(
    storage: SQLStorage, start_worker: StartWorker, tmp_path: Path
) -> None:
    pid_file = tmp_path / "grandchild.pid"
    script = f"sleep 60 & echo $! > {pid_file}; wait"
    run = await create_due_run(storage, shell_job({"command": ["sh", "-c", script]}))
    worker = await start_worker(HandlerRegistry(), shell=ENABLED)
    pid = int(await wait_until(lambda: pid_file.exists() and pid_file.read_text().strip()))

    await storage.cancel_run(run.id)

    await wait_until(lambda: process_gone(pid), timeout_seconds=5)
    await wait_until(lambda: worker.in_flight_count == 0)
    assert (await storage.get_run(run.id)).status is RunStatus.CANCELLED
