"""Highly available scheduler: every fire time exactly once, on time, while replicas die.

Three ``jobsched scheduler`` replicas and two ``jobsched worker`` processes share
one PostgreSQL database (the database is the queue). 200 jobs ``@every 1s`` are
created through the real API; for 36 s, one replica is SIGKILLed every 6 s
(round-robin) and a replacement started at once. Afterwards SQL checks, for every
job, that each fire time of the observation window (``anchor + k·1s``) has
exactly one run: no gap, no duplicate, nothing off the grid. The scheduling lag
(``runs.created_at - runs.scheduled_for``, both on the database clock) must have
a p99 under 1 s for the fire times away from the instants of the kills. And
housekeeping always has a leader: each time the leading replica is killed,
another takes over within seconds.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from tests.e2e.processes import JobschedProcess, free_port, metric_value

pytestmark = pytest.mark.e2e

JOB_COUNT = 200
# Concurrent POST /jobs requests while creating them.
CREATING_THREADS = 8
SCHEDULER_REPLICAS = 3
WORKER_COUNT = 2
WORKER_CONCURRENCY = 50
CHAOS_SECONDS = 36.0
KILL_INTERVAL_SECONDS = 6.0
# At 6, 12, ... 30 s: none in the last half interval, whose fire times are barely judged.
EXPECTED_KILLS = 5
# Fire times this soon after the last job was created are not judged (processes settle).
WARM_UP_SECONDS = 3
# Fire times this close to the end are not judged: they had too little time to fire.
COOL_DOWN_SECONDS = 3
LAG_P99_LIMIT_SECONDS = 1.0
# Fire times in [kill - before, kill + after] may be late: the victim may have held them.
KILL_EXCLUSION_BEFORE_SECONDS = 0.5
KILL_EXCLUSION_AFTER_SECONDS = 3.0
# Followers ask for the housekeeping lock every second (LEADERSHIP_CHECK_INTERVAL_SECONDS).
HANDOVER_LIMIT_SECONDS = 3.0
STARTUP_TIMEOUT_SECONDS = 30.0
LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class Kill:
    """One SIGKILLed replica: when, and what its /metrics said just before."""

    replica: int
    pid: int
    at_monotonic: float
    at_utc: datetime
    runs_fired_before: float
    was_leader: bool

    def describe(self, chaos_started_monotonic: float) -> str:
        offset = self.at_monotonic - chaos_started_monotonic
        return (
            f"t+{offset:.1f}s {self.at_utc.isoformat()} replica {self.replica} (pid {self.pid}, "
            f"had fired {self.runs_fired_before:.0f} runs, leader: {self.was_leader})"
        )


@dataclass
class Cluster:
    """The API, scheduler replicas and workers of the test; ``stop_all`` ends them all."""

    env: dict[str, str]
    log_directory: Path
    api: JobschedProcess | None = None
    schedulers: list[JobschedProcess] = field(default_factory=list)
    scheduler_metrics_urls: list[str] = field(default_factory=list)
    workers: list[JobschedProcess] = field(default_factory=list)
    killed: list[JobschedProcess] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    _started: Counter[str] = field(default_factory=Counter)

    def start(self, command: list[str], name: str, metrics_port: int = 0) -> JobschedProcess:
        generation = self._started[name]
        self._started[name] += 1
        env = {**self.env, "JOBSCHED_METRICS_PORT": str(metrics_port)}
        log_path = self.log_directory / f"{name}.{generation}.log"
        return JobschedProcess(command, env, log_path).start()

    def start_api(self) -> JobschedProcess:
        """The API on the ``JOBSCHED_API_PORT`` of ``env``."""
        self.api = self.start(["api"], "api")
        return self.api

    def start_scheduler(self, replica: int) -> JobschedProcess:
        """Start replica ``replica`` (a new process in its slot) with a metrics port of its own."""
        port = free_port()
        process = self.start(["scheduler"], f"scheduler-{replica}", port)
        url = f"http://127.0.0.1:{port}/metrics"
        if replica < len(self.schedulers):
            self.schedulers[replica] = process
            self.scheduler_metrics_urls[replica] = url
        else:
            self.schedulers.append(process)
            self.scheduler_metrics_urls.append(url)
        return process

    def start_worker(self, index: int) -> JobschedProcess:
        command = ["worker", "--concurrency", str(WORKER_CONCURRENCY)]
        process = self.start(command, f"worker-{index}", free_port())
        self.workers.append(process)
        return process

    def kill_and_replace_scheduler(self, replica: int) -> Kill:
        """SIGKILL replica ``replica`` (no goodbye: its connections just drop); start another."""
        victim = self.schedulers[replica]
        metrics_text = httpx.get(self.scheduler_metrics_urls[replica], timeout=2).text
        at_monotonic = time.monotonic()
        at_utc = datetime.now(UTC)
        victim.stop(signal.SIGKILL)
        self.killed.append(victim)
        self.start_scheduler(replica)
        kill = Kill(
            replica=replica,
            pid=victim.process.pid,
            at_monotonic=at_monotonic,
            at_utc=at_utc,
            runs_fired_before=metric_value(metrics_text, "scheduler_runs_fired_total"),
            was_leader=metric_value(metrics_text, "scheduler_leader") == 1,
        )
        self.kills.append(kill)
        return kill

    def running(self) -> list[JobschedProcess]:
        api = [self.api] if self.api is not None else []
        return [*api, *self.schedulers, *self.workers]

    def wait_until_serving(self, urls: Sequence[tuple[JobschedProcess, str]]) -> None:
        for process, url in urls:
            process.wait_for_http(url, timeout_seconds=STARTUP_TIMEOUT_SECONDS)

    def check_alive(self) -> None:
        """Fail at once, with its log, if a process exited that nobody stopped."""
        for process in self.running():
            if process.process.poll() is not None:
                raise AssertionError(
                    f"`jobsched {' '.join(process.command)}` exited with "
                    f"{process.process.returncode}:\n{process.log()}"
                )

    def leaders(self) -> list[int]:
        """The replicas whose /metrics say they lead housekeeping (a starting one does not)."""
        leaders = []
        for replica, url in enumerate(self.scheduler_metrics_urls):
            try:
                metrics_text = httpx.get(url, timeout=2).text
            except httpx.TransportError:  # a replacement not serving yet
                continue
            if metric_value(metrics_text, "scheduler_leader") == 1:
                leaders.append(replica)
        return leaders

    def stop_all(self) -> dict[str, int]:
        """SIGTERM every running process; their exit codes by log name."""
        exit_codes = {
            process.log_path.name: process.stop(timeout_seconds=30)
            for process in reversed(self.running())
        }
        self.api, self.schedulers, self.workers = None, [], []
        return exit_codes

    def scheduler_log_tails(self) -> str:
        sections = []
        for process in [*self.killed, *self.schedulers]:
            lines = process.log().splitlines()[-LOG_TAIL_LINES:]
            sections.append(f"--- {process.log_path.name} ---\n" + "\n".join(lines))
        return "\n".join(sections)


@contextmanager
def running_cluster(env: dict[str, str], log_directory: Path) -> Iterator[Cluster]:
    """A ``Cluster`` none of whose processes outlives the test, whatever happened."""
    cluster = Cluster(env, log_directory)
    try:
        yield cluster
    finally:
        for process in cluster.running():
            if process.process.poll() is None:
                # An AssertionError means it ignored SIGTERM and stop() killed it.
                with contextlib.suppress(AssertionError):
                    process.stop(timeout_seconds=5)


def _create_jobs(api_url: str, count: int) -> None:
    """``count`` noop jobs ``@every 1s``, created through ``POST /jobs`` a few at a time.

    Each is anchored at its own creation time, so fire times spread over the second.
    """
    with httpx.Client(base_url=api_url, timeout=10) as client:

        def create(_: int) -> None:
            response = client.post("/jobs", json={"type": "noop", "schedule": "@every 1s"})
            assert response.status_code == 201, response.text

        with ThreadPoolExecutor(max_workers=CREATING_THREADS) as executor:
            list(executor.map(create, range(count)))


@dataclass(frozen=True)
class Window:
    """The fire times judged: ``start <= scheduled_for < end`` (database clock)."""

    start: datetime
    end: datetime

    def as_params(self) -> dict[str, datetime]:
        return {"window_start": self.start, "window_end": self.end}


# Every job's expected fire times in the window: anchor + k seconds, k whole.
_EXPECTED_FIRE_TIMES = sql.SQL("""
    SELECT jobs.id AS job_id, expected.fire_time
    FROM jobs
    CROSS JOIN LATERAL generate_series(
        jobs.schedule_anchor_at
            + ceil(extract(epoch FROM %(window_start)s - jobs.schedule_anchor_at))
              * interval '1 second',
        %(window_end)s - interval '1 microsecond',
        interval '1 second'
    ) AS expected(fire_time)
""")

_WINDOW_RUNS = sql.SQL(
    "runs.scheduled_for >= %(window_start)s AND runs.scheduled_for < %(window_end)s"
)

_FIRE_TIME_CHECKS = {
    "gaps (expected fire times without a run)": sql.SQL("""
        SELECT expected.job_id, expected.fire_time
        FROM ({expected}) AS expected
        LEFT JOIN runs
          ON runs.job_id = expected.job_id AND runs.scheduled_for = expected.fire_time
        WHERE runs.id IS NULL
        ORDER BY expected.fire_time
    """),
    "duplicates (fire times with several runs)": sql.SQL("""
        SELECT runs.job_id, runs.scheduled_for, count(*)
        FROM runs WHERE {window_runs}
        GROUP BY runs.job_id, runs.scheduled_for
        HAVING count(*) > 1
        ORDER BY runs.scheduled_for
    """),
    "off-grid runs (not anchor + whole seconds)": sql.SQL("""
        SELECT runs.job_id, runs.scheduled_for, jobs.schedule_anchor_at
        FROM runs JOIN jobs ON jobs.id = runs.job_id
        WHERE {window_runs}
          AND mod(extract(epoch FROM runs.scheduled_for - jobs.schedule_anchor_at), 1) <> 0
        ORDER BY runs.scheduled_for
    """),
    "runs not fired by the schedule, or skipped": sql.SQL("""
        SELECT runs.job_id, runs.scheduled_for, runs.trigger, runs.status
        FROM runs WHERE {window_runs}
          AND (runs.trigger <> 'schedule' OR runs.status = 'skipped')
        ORDER BY runs.scheduled_for
    """),
}
_COUNT_EXPECTED = sql.SQL("SELECT count(*) FROM ({expected}) AS expected")
# count(*) against count(DISTINCT ...): the unique key makes them equal; checked anyway.
_COUNT_RUNS = sql.SQL("""
    SELECT count(*), count(DISTINCT (runs.job_id, runs.scheduled_for))
    FROM runs WHERE {window_runs}
""")
_RUNS_BY_STATUS = sql.SQL("SELECT status, count(*) FROM runs WHERE {window_runs} GROUP BY status")
_LAGS = sql.SQL("""
    SELECT scheduled_for, extract(epoch FROM created_at - scheduled_for)::float8
    FROM runs WHERE {window_runs}
""")


@dataclass(frozen=True)
class FireTimeReport:
    expected: int
    # Runs in the window, and distinct (job, fire time) among them.
    runs: tuple[int, ...]
    problems: dict[str, list[tuple[Any, ...]]]
    runs_by_status: dict[str, int]
    # (scheduled_for, lag in seconds) of every run in the window.
    lags: list[tuple[datetime, float]]


def _fire_time_report(database_url: str, window: Window) -> FireTimeReport:
    params = window.as_params()
    parts = {"expected": _EXPECTED_FIRE_TIMES, "window_runs": _WINDOW_RUNS}

    with psycopg.connect(database_url) as connection:

        def rows(query: sql.SQL) -> list[tuple[Any, ...]]:
            return connection.execute(query.format(**parts), params).fetchall()

        return FireTimeReport(
            expected=int(rows(_COUNT_EXPECTED)[0][0]),
            runs=tuple(int(count) for count in rows(_COUNT_RUNS)[0]),
            problems={name: rows(query) for name, query in _FIRE_TIME_CHECKS.items()},
            runs_by_status={status: int(count) for status, count in rows(_RUNS_BY_STATUS)},
            lags=[(scheduled_for, float(lag)) for scheduled_for, lag in rows(_LAGS)],
        )


def _database_now(database_url: str) -> datetime:
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT now()").fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def _percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


def _near_a_kill(scheduled_for: datetime, kills: Sequence[Kill]) -> bool:
    # Kill instants are the test's wall clock, fire times the database's: one host, one clock.
    before = timedelta(seconds=KILL_EXCLUSION_BEFORE_SECONDS)
    after = timedelta(seconds=KILL_EXCLUSION_AFTER_SECONDS)
    return any(kill.at_utc - before <= scheduled_for <= kill.at_utc + after for kill in kills)


def _describe_problems(report: FireTimeReport, kills: Sequence[Kill]) -> str:
    lines = []
    for name, rows in report.problems.items():
        if not rows:
            continue
        lines.append(f"{name}: {len(rows)}, first ones:")
        for row in rows[:10]:
            fire_time = row[1]
            assert isinstance(fire_time, datetime)
            nearest = min(kills, key=lambda kill: abs(kill.at_utc - fire_time), default=None)
            offset = (
                f" ({(fire_time - nearest.at_utc).total_seconds():+.2f}s from the kill of "
                f"replica {nearest.replica})"
                if nearest is not None
                else ""
            )
            lines.append(f"  {row}{offset}")
    return "\n".join(lines)


def _summary(window: Window, report: FireTimeReport, lags_away: Sequence[float]) -> str:
    lags = [lag for _, lag in report.lags]
    return (
        f"window {window.start.isoformat()} .. {window.end.isoformat()}: "
        f"{report.expected} fire times expected, runs (all, distinct) {report.runs}, "
        f"by status {report.runs_by_status}\n"
        f"lag overall ({len(lags)} runs): p50 {_percentile(lags, 0.5):.3f}s "
        f"p99 {_percentile(lags, 0.99):.3f}s max {max(lags, default=math.nan):.3f}s\n"
        f"lag away from kills ({len(lags_away)} runs): p50 {_percentile(lags_away, 0.5):.3f}s "
        f"p99 {_percentile(lags_away, 0.99):.3f}s max {max(lags_away, default=math.nan):.3f}s"
    )


@dataclass
class Handover:
    """The housekeeping leader was killed; ``seconds`` until another replica led."""

    kill: Kill
    seconds: float | None = None


def _run_chaos(cluster: Cluster, started_monotonic: float) -> list[Handover]:
    """For ``CHAOS_SECONDS``, SIGKILL a replica every ``KILL_INTERVAL_SECONDS``, round-robin.

    After each kill of the housekeeping leader, measures how long until another leads.
    """
    end = started_monotonic + CHAOS_SECONDS
    next_kill = started_monotonic + KILL_INTERVAL_SECONDS
    handovers: list[Handover] = []
    while time.monotonic() < end:
        cluster.check_alive()
        if time.monotonic() >= next_kill and next_kill < end - KILL_INTERVAL_SECONDS / 2:
            kill = cluster.kill_and_replace_scheduler(len(cluster.kills) % SCHEDULER_REPLICAS)
            print("killed", kill.describe(started_monotonic))
            if kill.was_leader:
                handovers.append(Handover(kill))
            next_kill += KILL_INTERVAL_SECONDS
        if handovers and handovers[-1].seconds is None and cluster.leaders():
            handovers[-1].seconds = time.monotonic() - handovers[-1].kill.at_monotonic
        time.sleep(0.1)  # the polling interval of the kill schedule
    return handovers


def test_every_fire_time_exactly_once_on_time_while_replicas_are_killed(
    postgres_url: str, tmp_path: Path
) -> None:
    api_port = free_port()
    env = {
        "JOBSCHED_DATABASE_URL": postgres_url,
        "JOBSCHED_QUEUE_URL": "",  # the database is the queue
        "JOBSCHED_API_PORT": str(api_port),
    }
    api_url = f"http://127.0.0.1:{api_port}"
    with running_cluster(env, tmp_path) as cluster:
        cluster.start_api()
        for replica in range(SCHEDULER_REPLICAS):
            cluster.start_scheduler(replica)
        for index in range(WORKER_COUNT):
            cluster.start_worker(index)
        assert cluster.api is not None
        cluster.wait_until_serving(
            [
                (cluster.api, f"{api_url}/readyz"),
                *zip(cluster.schedulers, cluster.scheduler_metrics_urls, strict=True),
            ]
        )

        creation_started = time.monotonic()
        _create_jobs(api_url, JOB_COUNT)
        chaos_started = time.monotonic()
        print(f"created {JOB_COUNT} jobs in {chaos_started - creation_started:.1f}s")
        handovers = _run_chaos(cluster, chaos_started)
        chaos_ended_at = _database_now(postgres_url)
        leaders_at_end = cluster.leaders()
        exit_codes = cluster.stop_all()
        log_tails = cluster.scheduler_log_tails()

    with psycopg.connect(postgres_url) as connection:
        row = connection.execute("SELECT max(schedule_anchor_at) FROM jobs").fetchone()
    assert row is not None
    last_anchor: datetime = row[0]
    window = Window(
        start=last_anchor.replace(microsecond=0) + timedelta(seconds=1 + WARM_UP_SECONDS),
        end=chaos_ended_at.replace(microsecond=0) - timedelta(seconds=COOL_DOWN_SECONDS),
    )
    report = _fire_time_report(postgres_url, window)
    kills = cluster.kills
    lags_away = [lag for at, lag in report.lags if not _near_a_kill(at, kills)]
    p99_away = _percentile(lags_away, 0.99)
    print(_summary(window, report, lags_away))
    print(f"kills: {len(kills)}")
    print("\n".join(kill.describe(chaos_started) for kill in kills))
    handover_seconds = [handover.seconds for handover in handovers]
    print(f"housekeeping hand-overs (seconds after the leader's kill): {handover_seconds}")
    print(f"leaders at the end: {leaders_at_end}; exit codes: {exit_codes}")

    problems = _describe_problems(report, kills)
    assert not problems, f"fire times not run exactly once:\n{problems}\n{log_tails}"
    window_seconds = int((window.end - window.start).total_seconds())
    assert report.expected == JOB_COUNT * window_seconds, report.expected
    assert report.runs == (report.expected, report.expected), report.runs
    assert p99_away < LAG_P99_LIMIT_SECONDS, f"p99 lag {p99_away:.3f}s\n{log_tails}"
    # The faults were real: replicas died while doing their share of the firing.
    assert len(kills) == EXPECTED_KILLS, [kill.describe(chaos_started) for kill in kills]
    assert all(kill.runs_fired_before > 0 for kill in kills), "a victim had fired nothing"
    # Every original replica was killed, so the first leader was: another took over quickly,
    # and in the end exactly one replica leads.
    assert handovers, "no kill hit the housekeeping leader"
    assert all(
        handover.seconds is not None and handover.seconds < HANDOVER_LIMIT_SECONDS
        for handover in handovers
    ), handover_seconds
    assert len(leaders_at_end) == 1, leaders_at_end
    assert set(exit_codes.values()) == {0}, exit_codes
