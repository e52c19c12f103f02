"""A scheduler and a few workers as real processes on one database and one queue.

``Deployment`` starts ``jobsched scheduler`` / ``jobsched worker`` children with
short leases (so a killed worker's runs are rescued within seconds), kills and
restarts workers, and notices a process that died on its own. ``RunLedger``
reads the outcome back by SQL: the database is the source of truth, so that is
where "no run lost, each completed once" is checked.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from jobsched.storage.schema import attempts, jobs, runs
from jobsched.storage.urls import parse_database_url
from tests.e2e.processes import JobschedProcess
from tests.queue_backends import BACKEND_URLS

E2E_DIRECTORY = Path(__file__).parent
HANDLER_TYPE = "short_sleep"
# Enough attempts that being caught by kills (or a broker restart) never makes a run dead.
MAX_ATTEMPTS = 20
WORKER_CONCURRENCY = 20
LOG_TAIL_LINES = 5
LOG_PROBLEM_LINES = 15


def deployment_env(database_url: str, backend: str, namespace: str) -> dict[str, str]:
    """Settings for every process of one deployment: short leases, fast rescue and reclaim."""
    env = {
        "JOBSCHED_DATABASE_URL": database_url,
        "JOBSCHED_QUEUE_NAMESPACE": namespace,
        "JOBSCHED_WORKER_LEASE_SECONDS": "2",
        "JOBSCHED_WORKER_HEARTBEAT_INTERVAL_SECONDS": "0.5",
        "JOBSCHED_WORKER_SHUTDOWN_GRACE_SECONDS": "2",
        "JOBSCHED_SCHEDULER_RESCUE_INTERVAL_SECONDS": "0.5",
        "JOBSCHED_QUEUE_REDIS_RECLAIM_IDLE_SECONDS": "2",
        "JOBSCHED_QUEUE_RECONNECT_BACKOFF_MAX_SECONDS": "1",
        "JOBSCHED_METRICS_PORT": "0",
        "PYTHONPATH": str(E2E_DIRECTORY),
    }
    queue_url = BACKEND_URLS[backend]
    if queue_url is not None:
        env["JOBSCHED_QUEUE_URL"] = queue_url
    return env


@dataclass
class Deployment:
    """The processes of one test; ``stop_all`` ends every one still running."""

    env: Mapping[str, str]
    log_directory: Path
    scheduler: JobschedProcess | None = None
    workers: list[JobschedProcess] = field(default_factory=list)
    finished: list[JobschedProcess] = field(default_factory=list)
    kills: int = 0
    _generations: dict[str, int] = field(default_factory=dict)

    def start_scheduler(self, **extra_env: str) -> JobschedProcess:
        self.scheduler = self._start(["scheduler"], "scheduler", extra_env)
        return self.scheduler

    def start_workers(self, count: int) -> None:
        self.workers = [self._start_worker(index) for index in range(count)]

    def _start_worker(self, index: int) -> JobschedProcess:
        name = f"worker-{index}"
        # The worker's id in the database names the process: "worker-1.2" is worker 1's third.
        worker_id = f"{name}.{self._generations.get(name, 0)}"
        command = [
            "worker",
            "--import",
            "handlers_for_tests",
            "--concurrency",
            str(WORKER_CONCURRENCY),
        ]
        return self._start(command, name, {"JOBSCHED_WORKER_ID": worker_id})

    def _start(
        self, command: list[str], name: str, extra_env: Mapping[str, str]
    ) -> JobschedProcess:
        generation = self._generations.get(name, 0)
        self._generations[name] = generation + 1
        log_path = self.log_directory / f"{name}.{generation}.log"
        return JobschedProcess(command, {**self.env, **extra_env}, log_path).start()

    def worker_ids(self) -> list[str]:
        """The database id of each running worker, by index."""
        return [process.env["JOBSCHED_WORKER_ID"] for process in self.workers]

    def kill_and_restart_worker(self, index: int) -> None:
        """SIGKILL worker ``index`` (no goodbye: its leases stop being renewed); start another."""
        victim = self.workers[index]
        victim.stop(signal.SIGKILL)
        self.finished.append(victim)
        self.kills += 1
        self.workers[index] = self._start_worker(index)

    def retire_scheduler(self) -> JobschedProcess:
        """The scheduler exited (as a fault injection meant it to); keep its log, start no other."""
        assert self.scheduler is not None
        retired, self.scheduler = self.scheduler, None
        retired.stop()  # closes its log; it has exited already
        self.finished.append(retired)
        return retired

    def running(self) -> list[JobschedProcess]:
        scheduler = [self.scheduler] if self.scheduler is not None else []
        return [*scheduler, *self.workers]

    def check_alive(self) -> None:
        """Fail at once, with its log, if a process exited that nobody stopped."""
        for process in self.running():
            if process.process.poll() is not None:
                raise AssertionError(
                    f"`jobsched {' '.join(process.command)}` exited with "
                    f"{process.process.returncode}:\n{process.log()}"
                )

    def stop_all(self) -> dict[str, int]:
        """SIGTERM every running process; their exit codes by log name."""
        exit_codes = {}
        for process in reversed(self.running()):
            exit_codes[process.log_path.name] = process.stop(timeout_seconds=30)
            self.finished.append(process)
        self.scheduler = None
        self.workers = []
        return exit_codes

    def log_lines_containing(self, text: str) -> list[str]:
        """Lines of every process's log (killed ones included) that contain ``text``."""
        return [
            f"{process.log_path.name}: {line}"
            for process in [*self.finished, *self.running()]
            for line in process.log().splitlines()
            if text in line
        ]

    def log_tails(self) -> str:
        """Per process log: its last warnings and errors, then its last lines."""
        sections = []
        for process in [*self.finished, *self.running()]:
            lines = process.log().splitlines()
            problems = [line for line in lines if " WARNING " in line or " ERROR " in line]
            sections.append(
                f"--- {process.log_path.name}: last warnings and errors ---\n"
                + "\n".join(problems[-LOG_PROBLEM_LINES:])
                + f"\n--- {process.log_path.name}: last lines ---\n"
                + "\n".join(lines[-LOG_TAIL_LINES:])
            )
        return "\n".join(sections)


@contextmanager
def running_deployment(env: Mapping[str, str], log_directory: Path) -> Iterator[Deployment]:
    """A ``Deployment`` whose processes are stopped on the way out, whatever happened."""
    deployment = Deployment(env, log_directory)
    try:
        yield deployment
    finally:
        for process in deployment.running():
            if process.process.poll() is None:
                process.stop(signal.SIGKILL)


class RunLedger:
    """What the database says happened to the runs of one test."""

    def __init__(self, database_url: str) -> None:
        self._engine = sa.create_engine(parse_database_url(database_url).sync_url)

    def close(self) -> None:
        self._engine.dispose()

    def insert_due_jobs(self, count: int, payload: Mapping[str, object]) -> None:
        """``count`` one-time ``short_sleep`` jobs due now (database clock), in one statement.

        The scheduler process fires them, as it would jobs created through the API.
        """
        retry = {
            "max_attempts": MAX_ATTEMPTS,
            "backoff": "fixed",
            "initial_delay_seconds": 0.0,
            "max_delay_seconds": 0.0,
            "jitter": False,
        }
        now = sa.func.now()
        rows = sa.select(
            sa.func.gen_random_uuid(),
            sa.literal(HANDLER_TYPE),
            sa.literal("UTC"),
            now,
            sa.literal(dict(payload), jobs.c.payload.type),
            sa.literal("default"),
            sa.literal(0),
            sa.literal(retry, jobs.c.retry.type),
            sa.literal("active"),
            now,
            now,
            now,
            now,
        ).select_from(sa.func.generate_series(1, count))
        columns = [
            "id",
            "type",
            "timezone",
            "run_at",
            "payload",
            "queue",
            "priority",
            "retry",
            "status",
            "next_run_at",
            "schedule_anchor_at",
            "created_at",
            "updated_at",
        ]
        with self._engine.begin() as connection:
            connection.execute(sa.insert(jobs).from_select(columns, rows))

    def database_now(self) -> object:
        with self._engine.connect() as connection:
            return connection.execute(sa.select(sa.func.now())).scalar_one()

    def run_counts(self) -> dict[str, int]:
        """Runs by status."""
        query = sa.select(runs.c.status, sa.func.count()).group_by(runs.c.status)
        with self._engine.connect() as connection:
            return {status: count for status, count in connection.execute(query).all()}

    def succeeded_count(self) -> int:
        return self.run_counts().get("succeeded", 0)

    def unpublished_run_count(self) -> int:
        query = sa.select(sa.func.count()).where(runs.c.published_at.is_(None))
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def attempt_counts(self) -> dict[str, int]:
        """Attempts by status (``lost``: the worker's lease expired, e.g. it was killed)."""
        query = sa.select(attempts.c.status, sa.func.count()).group_by(attempts.c.status)
        with self._engine.connect() as connection:
            return {status: count for status, count in connection.execute(query).all()}

    def running_attempts_by_worker(self) -> dict[str, int]:
        """Attempts under way, by the id of the worker holding them."""
        query = (
            sa.select(attempts.c.worker_id, sa.func.count())
            .where(attempts.c.status == "running")
            .group_by(attempts.c.worker_id)
        )
        with self._engine.connect() as connection:
            return {worker: count for worker, count in connection.execute(query).all()}

    def succeeded_attempts_by_worker(self, started_after: object) -> dict[str, int]:
        query = (
            sa.select(attempts.c.worker_id, sa.func.count())
            .where(attempts.c.status == "succeeded", attempts.c.started_at > started_after)
            .group_by(attempts.c.worker_id)
        )
        with self._engine.connect() as connection:
            return {worker: count for worker, count in connection.execute(query).all()}

    def assert_each_run_succeeded_once(self, expected_runs: int) -> None:
        """Exactly ``expected_runs`` runs, one per job, each ``succeeded`` by one attempt only."""
        with self._engine.connect() as connection:
            scalar = connection.execute
            run_count = scalar(sa.select(sa.func.count()).select_from(runs)).scalar_one()
            job_count = scalar(sa.select(sa.func.count(sa.distinct(runs.c.job_id)))).scalar_one()
            succeeded = attempts.c.status == "succeeded"
            twice = (
                sa.select(attempts.c.run_id)
                .where(succeeded)
                .group_by(attempts.c.run_id)
                .having(sa.func.count() != 1)
            )
            runs_succeeded_twice = scalar(twice).scalars().all()
            runs_with_success = scalar(
                sa.select(sa.func.count(sa.distinct(attempts.c.run_id))).where(succeeded)
            ).scalar_one()
            # The succeeded attempt is the run's last one: nothing ran it after it was done.
            success_not_last = scalar(
                sa.select(sa.func.count())
                .select_from(runs.join(attempts, attempts.c.run_id == runs.c.id))
                .where(succeeded, attempts.c.attempt != runs.c.attempt)
            ).scalar_one()
        counts = self.run_counts()
        assert run_count == expected_runs, f"{run_count} runs, expected {expected_runs}: {counts}"
        assert job_count == expected_runs, f"runs of only {job_count} jobs"
        assert counts == {"succeeded": expected_runs}, f"runs by status: {counts}"
        assert runs_succeeded_twice == [], (
            f"runs with several succeeded attempts: {runs_succeeded_twice[:10]}"
        )
        assert runs_with_success == expected_runs, (
            f"{runs_with_success} runs with a succeeded attempt"
        )
        assert success_not_last == 0, f"{success_not_last} runs attempted again after succeeding"
        attempt_counts = self.attempt_counts()
        assert "running" not in attempt_counts, f"attempts never ended: {attempt_counts}"


def wait_for_all_final(
    ledger: RunLedger,
    deployment: Deployment,
    expected_runs: int,
    *,
    timeout_seconds: float,
    between_checks: Callable[[], None] = lambda: None,
) -> None:
    """Poll until ``expected_runs`` runs exist and none is waiting or running.

    ``between_checks`` runs after every poll (killing workers on a cadence, say).
    On the deadline, fails with the runs by status, the attempts and the log tails.
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        deployment.check_alive()
        counts = ledger.run_counts()
        unfinished = sum(counts.get(status, 0) for status in ("queued", "running", "retrying"))
        if sum(counts.values()) >= expected_runs and unfinished == 0:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"not every run finished within {timeout_seconds}s: runs {counts}, "
                f"attempts {ledger.attempt_counts()}, "
                f"unpublished {ledger.unpublished_run_count()}\n{deployment.log_tails()}"
            )
        between_checks()
        time.sleep(0.2)  # the polling interval, as in processes.wait_until
