"""Benchmark processes: start, wait on, stop, and measure them (memory and CPU from ``/proc``).

Every benchmark runs the real command-line programs (``jobsched worker``,
``celery worker``) as child processes, so what it measures is what a deployment
runs. ``UsageMeter`` gives each role (``worker``, ``scheduler``, ``api``) its idle
memory, its peak memory while busy and the CPU it used while busy. A process's
figures include its descendants (a prefork Celery worker's pool children), so
roles compare whatever their process model.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.support import cpu_seconds_of_processes, cpu_used_since

BIN_DIRECTORY = Path(sys.executable).parent
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
DEADLINE_SECONDS = 600.0
_POLL_INTERVAL_SECONDS = 0.2
_RSS_SAMPLE_INTERVAL_SECONDS = 0.1
_STOP_GRACE_SECONDS = 60.0


def log_directory() -> Path:
    """Where the started processes' output goes: ``$TMPDIR`` or ``/tmp`` (read it on failure)."""
    return Path(os.environ.get("TMPDIR", "/tmp"))  # noqa: S108 - process logs only


def start(command: Sequence[str], env: Mapping[str, str], log_name: str) -> subprocess.Popen[bytes]:
    """Start ``command`` from the repository root, its output to ``log_name`` in the log folder."""
    with (log_directory() / log_name).open("wb") as log:
        return subprocess.Popen(  # noqa: S603 - our own CLIs and Celery's, by absolute path
            list(command),
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPOSITORY_ROOT,
        )


def stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM all (a graceful stop), then wait; kill one that outlives the grace."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(
    condition: Callable[[], bool],
    processes: Sequence[subprocess.Popen[bytes]],
    what: str,
    deadline_seconds: float = DEADLINE_SECONDS,
) -> None:
    """Poll ``condition`` until true; fail fast if a process died, or after the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            raise RuntimeError(
                f"a benchmark process exited while waiting for {what} (logs in {log_directory()})"
            )
        if condition():
            return
        time.sleep(_POLL_INTERVAL_SECONDS)
    raise RuntimeError(f"no {what} within {deadline_seconds:.0f} s")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- memory and CPU --------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    children: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children += [int(child) for child in (task / "children").read_text().split()]
    except OSError:  # the process (or a thread) is gone
        pass
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending += _children(current)
    return tree


def rss_mib(pid: int) -> float:
    """Resident memory of one process in MiB; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants (pages they share are counted each time)."""
    return sum(rss_mib(member) for member in process_tree(pid))


def tree_cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds of each process in ``pids`` and in their trees, by pid."""
    return cpu_seconds_of_processes([member for pid in pids for member in process_tree(pid)])


@dataclass(frozen=True, slots=True)
class RoleUsage:
    """One role's processes: memory idle and at the busiest, CPU used while busy.

    RSS figures are per process (the largest of the role's processes); CPU is
    summed over them, so it is what the role as a whole spent on the work.
    """

    role: str
    processes: int
    idle_rss_mib: float
    busy_rss_mib: float
    busy_cpu_seconds: float

    def cpu_seconds_per_1000(self, units: int) -> float:
        """CPU seconds per 1,000 units of work (runs, tasks, jobs created)."""
        return self.busy_cpu_seconds / units * 1000


@dataclass(frozen=True, slots=True)
class ServiceUsage:
    """CPU a shared service (PostgreSQL's backends, a broker) spent while the work ran."""

    service: str
    busy_cpu_seconds: float

    def cpu_seconds_per_1000(self, units: int) -> float:
        return self.busy_cpu_seconds / units * 1000


class UsageMeter:
    """Measures roles of processes: ``record_idle()``, then the work inside ``with busy():``.

    ``services`` name the processes of shared services by a lookup, run when the
    work starts and when it ends (PostgreSQL opens a backend per new connection):
    only their CPU is counted, a process that appeared meanwhile counts whole.
    """

    def __init__(
        self,
        roles: Mapping[str, Sequence[int]],
        services: Mapping[str, Callable[[], Sequence[int]]] | None = None,
    ) -> None:
        self._roles = {role: list(pids) for role, pids in roles.items()}
        self._services = dict(services or {})
        self._idle: dict[str, float] = {}
        self._peak: dict[str, float] = dict.fromkeys(self._roles, 0.0)
        self._cpu: dict[str, float] = dict.fromkeys(self._roles, 0.0)
        self._service_cpu: dict[str, float] = dict.fromkeys(self._services, 0.0)

    def _largest_rss(self, role: str) -> float:
        return max((tree_rss_mib(pid) for pid in self._roles[role]), default=0.0)

    def record_idle(self) -> None:
        """Note every role's memory now: call once the processes are up and waiting for work."""
        self._idle = {role: self._largest_rss(role) for role in self._roles}

    def _sample_peaks(self, stopped: threading.Event) -> None:
        while not stopped.wait(_RSS_SAMPLE_INTERVAL_SECONDS):
            for role in self._roles:
                self._peak[role] = max(self._peak[role], self._largest_rss(role))

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Sample peak memory in a thread and count CPU from entry to exit."""
        before = {role: tree_cpu_seconds(pids) for role, pids in self._roles.items()}
        services_before = {
            service: cpu_seconds_of_processes(lookup())
            for service, lookup in self._services.items()
        }
        stopped = threading.Event()
        sampler = threading.Thread(target=self._sample_peaks, args=(stopped,), daemon=True)
        sampler.start()
        try:
            yield
        finally:
            stopped.set()
            sampler.join()
        for role, pids in self._roles.items():
            self._cpu[role] = cpu_used_since(before[role], tree_cpu_seconds(pids))
            # A burst shorter than one sampling interval still counts its end state.
            self._peak[role] = max(self._peak[role], self._largest_rss(role))
        for service, lookup in self._services.items():
            after = cpu_seconds_of_processes(lookup())
            self._service_cpu[service] = cpu_used_since(services_before[service], after)

    def usage(self) -> list[RoleUsage]:
        return [
            RoleUsage(
                role,
                len(pids),
                self._idle.get(role, 0.0),
                self._peak[role],
                self._cpu[role],
            )
            for role, pids in self._roles.items()
        ]

    def service_usage(self) -> list[ServiceUsage]:
        return [ServiceUsage(service, seconds) for service, seconds in self._service_cpu.items()]
