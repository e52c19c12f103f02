"""A real ``jobsched standalone`` on SQLite, auth on, for the client and CLI tests."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from jobsched.client import Client
from tests.e2e.processes import JOBSCHED, JobschedProcess, free_port

E2E_DIRECTORY = Path(__file__).parents[1] / "e2e"


@dataclass
class Server:
    url: str
    admin_token: str
    env: dict[str, str]
    directory: Path
    process: JobschedProcess

    def client(self, token: str | None = None) -> Client:
        return Client(self.url, token=self.admin_token if token is None else token)

    def token(self, role: str) -> str:
        with self.client() as admin:
            return admin.tokens.create(f"{role}-{uuid.uuid4().hex[:8]}", role).token

    def cli_env(self, token: str | None = None, **extra: str) -> dict[str, str]:
        """The environment of a ``jobsched`` client command: this server, admin by default."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("JOBSCHED_") and key != "XDG_CONFIG_HOME"
        }
        env["XDG_CONFIG_HOME"] = str(self.directory / "no-config")
        env["JOBSCHED_URL"] = self.url
        env["JOBSCHED_TOKEN"] = self.admin_token if token is None else token
        env.update(extra)
        return env


def _run(arguments: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [JOBSCHED, *arguments], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@contextmanager
def standalone(directory: Path) -> Iterator[Server]:
    """Migrate a new SQLite file, make an admin token on it, then serve it."""
    port = free_port()
    env = {
        "JOBSCHED_DATABASE_URL": f"sqlite:///{directory / 'jobsched.db'}",
        "JOBSCHED_API_PORT": str(port),
        "JOBSCHED_API_AUTH_ENABLED": "true",
        "JOBSCHED_API_AUTH_CACHE_SECONDS": "0.2",
        "PYTHONPATH": str(E2E_DIRECTORY),
    }
    full_env = {**os.environ, **env}
    _run(["migrate"], full_env)
    admin_token = _run(["tokens", "create", "--name", "root", "--role", "admin"], full_env)
    process = JobschedProcess(
        ["standalone", "--import", "handlers_for_tests"], env, directory / "standalone.log"
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_for_http(f"{url}/readyz")
        yield Server(url, admin_token, env, directory, process)
    finally:
        process.stop()
