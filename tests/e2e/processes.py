"""Start and stop real ``jobsched`` processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from jobsched.storage.migrate import upgrade_to_head
from jobsched.storage.urls import parse_database_url
from tests.conftest import POSTGRES_ADMIN_URL

JOBSCHED = str(Path(sys.executable).with_name("jobsched"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], object], *, timeout_seconds: float, message: str) -> None:
    """Poll ``predicate`` until it is truthy; fail with ``message`` at the deadline."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_seconds}s: {message}")


@dataclass
class JobschedProcess:
    """One ``jobsched <command>`` child process with its output kept in a log file."""

    command: list[str]
    env: Mapping[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] = field(init=False)

    def start(self) -> JobschedProcess:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [JOBSCHED, *self.command],
            env={**os.environ, **self.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_seconds: float = 20) -> int:
        """Send ``sig`` and wait for the exit code; kill if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(
                    f"`jobsched {' '.join(self.command)}` ignored {sig.name}:\n{self.log()}"
                ) from None
        self._log.close()
        return self.process.returncode

    def wait_for_http(self, url: str, timeout_seconds: float = 30) -> None:
        def answers() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"`jobsched {' '.join(self.command)}` exited:\n{self.log()}")
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, timeout_seconds=timeout_seconds, message=f"{url} answering")


def metric_value(metrics_text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{key}="{wanted}"' in series for key, wanted in labels.items()):
            total += float(value)
    return total


def migrated_database(kind: str, directory: Path) -> Iterator[str]:
    """A migrated database of ``kind`` (``sqlite`` or ``postgresql``) to share across a
    module: yields its URL once; drop it by exhausting the generator."""
    if kind == "sqlite":
        url = f"sqlite:///{directory / 'jobsched.db'}"
        upgrade_to_head(parse_database_url(url))
        yield url
        return
    name = f"jobsched_e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    upgrade_to_head(parse_database_url(url))
    yield url
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]
