"""Every CLI mistake of issue 11 prints one line naming the setting at fault, exits non-zero,
and shows no traceback: the installed ``jobsched`` run as a new user would run it."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobsched.storage.database import SQLStorage
from tests.clients.cli import jobsched, ok, ok_json, one_line_error
from tests.clients.server import Server
from tests.e2e.hook_server import hook_server
from tests.e2e.processes import JOBSCHED, free_port, wait_until

pytestmark = pytest.mark.e2e

REPOSITORY = Path(__file__).parents[2]
WRONG_TOKEN = "jobsched_not-a-token"


def _service_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBSCHED_")}
    env.update({"JOBSCHED_DATABASE_URL": f"sqlite:///{tmp_path / 'db' / 'jobsched.db'}"})
    env.update(extra)
    return env


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


# -- client commands ---------------------------------------------------------------------


def test_an_unreachable_server_names_the_url(server: Server) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = one_line_error("jobs", "list", env=server.cli_env(JOBSCHED_URL=url))
    assert line.startswith(f"jobsched: error: cannot reach the jobsched API at {url} (--url")
    assert "Connection refused" in line


def test_401_names_where_the_token_came_from(server: Server) -> None:
    line = one_line_error("jobs", "list", env=server.cli_env(token=WRONG_TOKEN))
    assert line.startswith(f"jobsched: error: {server.url} refused the token from JOBSCHED_TOKEN")
    line = one_line_error("jobs", "list", "--token", WRONG_TOKEN, env=server.cli_env())
    assert "refused the token from --token" in line
    env = server.cli_env()
    del env["JOBSCHED_TOKEN"]
    line = one_line_error("workers", "list", env=env)
    assert f"{server.url} needs an API token: give --token, set JOBSCHED_TOKEN" in line


def test_403_names_the_token_and_the_role_it_lacks(server: Server) -> None:
    line = one_line_error(
        "jobs", "create", "--type", "noop", env=server.cli_env(token=server.token("read"))
    )
    assert line.startswith("jobsched: error: the token from JOBSCHED_TOKEN may not do this: ")
    assert "write" in line
    line = one_line_error("audit", "list", env=server.cli_env(token=server.token("operate")))
    assert "admin" in line


def test_404(server: Server) -> None:
    missing = str(uuid.uuid4())
    line = one_line_error("jobs", "get", missing, env=server.cli_env())
    assert line.startswith("jobsched: error: 404 Not found: id: ")
    assert missing in line
    line = one_line_error("jobs", "trigger", "no-such-name", env=server.cli_env())
    assert line == "jobsched: error: no job named 'no-such-name' (JOB is a job's id or name)"
    assert "404" in one_line_error("runs", "get", missing, env=server.cli_env())


def test_422_prints_the_field_at_fault_and_the_detail(server: Server) -> None:
    line = one_line_error(
        "jobs", "create", "--type", "noop", "--schedule", "61 * * * *", env=server.cli_env()
    )
    assert line.startswith("jobsched: error: 422 The request is not valid: schedule: ")
    assert "schedule: schedule:" not in line
    line = one_line_error(
        "jobs", "create", "--type", "noop", "--priority", "1000", env=server.cli_env()
    )
    assert "priority: " in line
    line = one_line_error("runs", "list", "--status", "sleepy", env=server.cli_env())
    assert "status: " in line


def test_a_bad_job_file_names_the_file_and_the_line(server: Server, tmp_path: Path) -> None:
    bad_yaml = tmp_path / "job.yaml"
    bad_yaml.write_text("type: noop\nschedule: '@daily\npayload: {}\n")
    line = one_line_error("jobs", "create", "-f", str(bad_yaml), env=server.cli_env())
    assert line.startswith(f"jobsched: error: {bad_yaml}: line ")
    assert "(YAML)" in line
    bad_json = tmp_path / "job.json"
    bad_json.write_text('{\n  "type": "noop",\n  "schedule": @daily\n}\n')
    line = one_line_error("jobs", "create", "-f", str(bad_json), env=server.cli_env())
    assert line.startswith(f"jobsched: error: {bad_json}: line 3: ")
    line = one_line_error("jobs", "create", "-f", "-", env=server.cli_env(), stdin="[1, 2]\n")
    assert line == "jobsched: error: -f -: expected one job definition (a mapping of fields)"
    missing = tmp_path / "missing.yaml"
    line = one_line_error("jobs", "create", "-f", str(missing), env=server.cli_env())
    assert line == f"jobsched: error: -f {missing}: No such file or directory"


def test_bad_flags_and_values(server: Server) -> None:
    env = server.cli_env()
    line = one_line_error("jobs", "list", "-o", "xml", env=env)
    assert "'--output' / '-o'" in line
    assert "'xml' is not one of 'table', 'json', 'jsonl'" in line
    line = one_line_error("jobs", "create", "--type", "noop", "--payload", "{a:1}", env=env)
    assert line.startswith("jobsched: error: --payload: not JSON")
    line = one_line_error("jobs", "create", "--schedule", "@daily", env=env)
    assert line == "jobsched: error: jobs create needs --type (or a 'type' field in -f FILE)"
    line = one_line_error("jobs", "list", "--limit", "0", env=env)
    assert "--limit" in line
    line = one_line_error("jobs", "frobnicate", env=env)
    assert "No such command 'frobnicate'" in line
    line = one_line_error("runs", "watch", env=env)
    assert "RUN" in line


def test_profiles_mistakes(server: Server, tmp_path: Path) -> None:
    config = tmp_path / "jobsched" / "cli.yaml"
    env = server.cli_env(XDG_CONFIG_HOME=str(tmp_path))
    line = one_line_error("jobs", "list", "--profile", "prod", env=env)
    assert line == (
        f"jobsched: error: unknown profile 'prod' (--profile); profiles in {config} "
        "(no such file): none"
    )
    config.parent.mkdir()
    config.write_text("profiles:\n  staging: {url: 'http://x'}\n  dev: {url: 'http://y'}\n")
    line = one_line_error("jobs", "list", env={**env, "JOBSCHED_PROFILE": "prod"})
    assert line.endswith(f"'prod' (JOBSCHED_PROFILE); profiles in {config}: dev, staging")
    config.write_text("profiles:\n  staging: {url: 'http://x'\n")
    line = one_line_error("jobs", "list", env=env)
    assert line.startswith(f"jobsched: error: {config}: line 3: ")
    config.write_text("profiles:\n  staging: {url: 'http://x', password: 'p'}\n")
    line = one_line_error("jobs", "list", env=env)
    assert "profile 'staging' may set only url, token and token_file (not password)" in line


# -- service commands --------------------------------------------------------------------


def test_bad_config_files_for_service_commands(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("api:\n  port: [\n")
    line = one_line_error("--config", str(config), "migrate", env=_service_env(tmp_path))
    assert line.startswith(f"jobsched: error: config file {config} is not valid YAML: line ")
    config.write_text("api:\n  prot: 8081\n")
    line = one_line_error("api", "--config", str(config), env=_service_env(tmp_path))
    assert line == "jobsched: error: setting api.prot: Extra inputs are not permitted"
    line = one_line_error("--config", str(tmp_path / "none.yaml"), "migrate",
                          env=_service_env(tmp_path))  # fmt: skip
    assert "cannot read config file" in line


def test_bad_option_values_name_the_option(tmp_path: Path) -> None:
    env = _service_env(tmp_path)
    line = one_line_error("worker", "--concurrency", "0", env=env)
    assert line == (
        "jobsched: error: --concurrency (worker.concurrency): "
        "Input should be greater than or equal to 1"
    )
    line = one_line_error("standalone", "--port", "99999", env=env)
    assert line.startswith("jobsched: error: --port (api.port): ")
    # The same value through the environment reads as cleanly.
    line = one_line_error("standalone", env={**env, "JOBSCHED_API_PORT": "99999"})
    assert line.startswith("jobsched: error: setting api.port: ")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://postgres@no-such-host.invalid/jobsched", "failed to resolve host"),
        ("postgresql://postgres@127.0.0.1:1/jobsched", "Connection refused"),
        ("postgresql://postgres@127.0.0.1:5432/no_such_database_x", "does not exist"),
        ("postgresql://no_such_user_x@127.0.0.1:5432/postgres", 'role "no_such_user_x"'),
    ],
)
def test_migrate_against_a_database_it_cannot_reach(tmp_path: Path, url: str, reason: str) -> None:
    line = one_line_error("migrate", env=_service_env(tmp_path, JOBSCHED_DATABASE_URL=url))
    assert line.startswith("jobsched: error: database.url postgresql+psycopg://")
    assert reason in line


def test_migrate_on_an_sqlite_path_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = _service_env(tmp_path, JOBSCHED_DATABASE_URL=f"sqlite:///{blocker}/sub/jobsched.db")
    line = one_line_error("migrate", env=env)
    assert line.startswith(f"jobsched: error: database.url sqlite:///{blocker}/sub/jobsched.db: ")
    assert "cannot create" in line


def test_standalone_on_a_taken_port_or_a_bad_host_fails_before_touching_the_database(
    tmp_path: Path, taken_port: int
) -> None:
    env = _service_env(tmp_path)
    line = one_line_error("standalone", "--port", str(taken_port), env=env)
    assert line == (
        f"jobsched: error: api.port {taken_port} (--port, JOBSCHED_API_PORT): cannot listen on "
        f"127.0.0.1:{taken_port} (Address already in use); choose a free port"
    )
    line = one_line_error("standalone", "--host", "no-such-host.invalid", env=env)
    assert line.startswith("jobsched: error: api.host 'no-such-host.invalid' (--host, ")
    assert not (tmp_path / "db" / "jobsched.db").exists()


def test_a_taken_metrics_port_says_what_to_set(sqlite_url: str, taken_port: int) -> None:
    env = {
        **_service_env(Path("/nonexistent")),
        "JOBSCHED_DATABASE_URL": sqlite_url,
        "JOBSCHED_METRICS_PORT": str(taken_port),
    }
    for command in ("scheduler", "worker"):
        line = one_line_error(command, env=env)
        assert line == (
            f"jobsched: error: metrics.port {taken_port}: cannot listen on 127.0.0.1:"
            f"{taken_port} (Address already in use); set JOBSCHED_METRICS_PORT to a free port"
        )


def test_a_worker_refusing_to_start_leaves_no_empty_database(tmp_path: Path) -> None:
    env = _service_env(tmp_path, JOBSCHED_METRICS_PORT="0")
    line = one_line_error("worker", env=env)
    assert line == (
        f"jobsched: error: no database at {tmp_path / 'db' / 'jobsched.db'}: run `jobsched migrate`"
    )
    assert not (tmp_path / "db" / "jobsched.db").exists()


def test_an_unknown_option_shows_the_usage_of_its_command(tmp_path: Path) -> None:
    done = jobsched("api", "--prot", "8081", env=_service_env(tmp_path))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "usage: jobsched api [-h] [--config FILE] [--host HOST] [--port PORT]",
        "jobsched api: error: unrecognized arguments: --prot 8081",
    ]


def test_version_and_the_migrate_script_help(tmp_path: Path) -> None:
    version = ok("--version", env=_service_env(tmp_path))
    assert version.startswith("jobsched 0.")
    done = subprocess.run(
        ["bash", str(REPOSITORY / "scripts" / "migrate.sh"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("usage: scripts/migrate.sh")
    assert "jobsched migrate" in done.stdout


def test_worker_settings_from_the_environment_and_imports_from_the_current_directory(
    postgres_url: str, tmp_path: Path
) -> None:
    """Comma-separated lists, nested settings, and ``--import`` of ./myapp as ``python -m``."""
    package = tmp_path / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "handlers.py").write_text(
        "import jobsched\n\n\n@jobsched.handler('myapp.hello')\n"
        "def hello(payload, context):\n    return None\n"
    )
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH"}} | {
        "JOBSCHED_DATABASE_URL": postgres_url,
        "JOBSCHED_METRICS_PORT": "0",
        "JOBSCHED_WORKER_QUEUES": "alpha,beta",
        "JOBSCHED_WORKER_SHELL_ENABLED": "true",
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [JOBSCHED, "worker", "--import", "myapp.handlers"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:

        def registered() -> list[object]:
            async def read() -> list[object]:
                storage = SQLStorage.from_url(postgres_url, pool_size=1)
                try:
                    return list(await storage.list_workers())
                finally:
                    await storage.close()

            assert worker.poll() is None, log_path.read_text()
            return asyncio.run(read())

        wait_until(registered, timeout_seconds=30, message="the worker registering")
        (record,) = registered()
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    assert record.info.queues == ["alpha", "beta"]  # type: ignore[attr-defined]
    assert {"myapp.hello", "shell"} <= set(record.info.handler_types)  # type: ignore[attr-defined]


def test_the_http_handler_says_who_it_is(server: Server) -> None:
    with hook_server() as hook, server.client() as client:
        job = client.jobs.create(type="http", payload={"url": hook.url, "method": "POST"})
        wait_until(hook.received, timeout_seconds=30, message="the hook being called")
        (request,) = hook.received()
    assert request["User-Agent"].startswith("jobsched/0.")
    assert job.type == "http"


def test_standalone_keeps_running_after_the_mistakes(server: Server) -> None:
    """The shared server was not disturbed by any of the above."""
    assert server.process.process.poll() is None, server.process.log()
    assert ok_json("workers", "list", env=server.cli_env())
