"""Instruments for the scheduler benchmark: the real scheduler, timed; jobs loaded in bulk.

``MeasuredScheduler`` is ``Scheduler`` with each inherited ``tick()`` timed
(wall and process CPU); ``RecordingStorage`` is ``SQLStorage`` noting when each
fire transaction committed and, with a broker, when each outbox batch had been
handed to the broker. Neither changes what the scheduler does: the same SQL, the
same loop (``Scheduler.run``), wired as ``jobsched scheduler`` wires it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from bench.support import (
    cpu_seconds_of_processes,
    cpu_used_since,
    machine_busy_seconds,
    percentile,
)
from jobsched.config.settings import QueueSettings, SchedulerSettings
from jobsched.core.ids import new_id
from jobsched.core.models import Job, JobStatus, OutboxRun, RetryPolicy, Run
from jobsched.core.planning import FirePlan
from jobsched.queue import RunQueue, create_queue
from jobsched.scheduler.service import Scheduler
from jobsched.storage.base import Storage
from jobsched.storage.database import SQLStorage, create_engine_for
from jobsched.storage.leadership import Leadership, leadership_for
from jobsched.storage.notifications import JOBS_CHANNEL, NotificationListener
from jobsched.storage.rows import job_values
from jobsched.storage.schema import jobs
from jobsched.storage.urls import parse_database_url

# Jobs are written with fire times a day ahead, then shifted to "now" in one
# UPDATE once the (long) bulk load is over, so none comes due while loading.
_LOAD_PLACEHOLDER_LEAD = timedelta(days=1)
_SHUFFLE_SEED = 20_000


# --- the measured scheduler ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TickSample:
    started_epoch: float
    wall_seconds: float
    cpu_seconds: float
    fired: int


@dataclass(frozen=True, slots=True)
class FireRecord:
    """One fire transaction: the tick's ``now``, when it had committed, the runs it made."""

    tick_now: datetime
    committed_epoch: float
    runs: list[Run]


@dataclass(frozen=True, slots=True)
class PublishRecord:
    """One outbox batch: when the broker had taken it, and its runs."""

    published_epoch: float
    runs: list[OutboxRun]


class RecordingStorage(SQLStorage):
    """``SQLStorage`` noting when fire transactions committed and when the broker took runs.

    The SQL is unchanged.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fires: list[FireRecord] = []
        self.publishes: list[PublishRecord] = []

    async def publish_pending(
        self, limit: int, publish: Callable[[list[OutboxRun]], Awaitable[None]]
    ) -> int:
        async def publish_and_record(batch: list[OutboxRun]) -> None:
            await publish(batch)
            # The broker has the runs now: a worker could take them from here on.
            self.publishes.append(PublishRecord(time.time(), batch))

        return await super().publish_pending(limit, publish_and_record)

    async def fire_due_jobs(
        self,
        now: datetime,
        limit: int,
        plan: Callable[[Job], FirePlan],
        *,
        published: bool,
    ) -> list[Run]:
        runs = await super().fire_due_jobs(now, limit, plan, published=published)
        if runs:
            # A reference only: per-run work here would be billed to the tick.
            self.fires.append(FireRecord(now, time.time(), runs))
        return runs


class MeasuredScheduler(Scheduler):
    """The real scheduler; ``tick()`` is the inherited one, timed from outside."""

    def __init__(
        self,
        storage: Storage,
        queue: RunQueue,
        settings: SchedulerSettings,
        leadership: Leadership,
        *,
        fired_target: int | None = None,
    ) -> None:
        super().__init__(storage, queue, settings, leadership=leadership)
        self.ticks: list[TickSample] = []
        self.fired_total = 0
        self._fired_target = fired_target
        self.target_reached = asyncio.Event()

    async def tick(self) -> int:
        # Nothing else runs in this process during a measurement, so the process
        # CPU used while the tick is awaited is the tick's.
        started_epoch = time.time()
        started_wall = time.perf_counter()
        started_cpu = time.process_time()
        fired = await super().tick()
        cpu_seconds = time.process_time() - started_cpu
        wall_seconds = time.perf_counter() - started_wall
        self.ticks.append(TickSample(started_epoch, wall_seconds, cpu_seconds, fired))
        self.fired_total += fired
        if self._fired_target is not None and self.fired_total >= self._fired_target:
            self.target_reached.set()
        return fired


@dataclass(frozen=True, slots=True)
class CPUSnapshot:
    epoch: float
    process_cpu_seconds: float
    backend_cpu_seconds: dict[int, float]
    machine_busy_seconds: float


async def _backend_pids(admin_url: str, database_name: str) -> list[int]:
    """PostgreSQL client backends connected to the benchmark's database (the scheduler's)."""
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = %s AND backend_type = 'client backend'",
            [database_name],
        )
        return [int(row[0]) for row in await cursor.fetchall()]


async def cpu_snapshot(admin_url: str, database_name: str) -> CPUSnapshot:
    pids = await _backend_pids(admin_url, database_name)
    return CPUSnapshot(
        epoch=time.time(),
        process_cpu_seconds=time.process_time(),
        backend_cpu_seconds=cpu_seconds_of_processes(pids),
        machine_busy_seconds=machine_busy_seconds(),
    )


@dataclass(frozen=True, slots=True)
class CPUUsage:
    """CPU seconds used between two snapshots, by us and by everyone else."""

    elapsed_seconds: float
    scheduler_process_seconds: float
    database_backend_seconds: float
    machine_busy_seconds: float

    @property
    def other_load_cores(self) -> float:
        """Busy cores not explained by this benchmark (other engineers' work, PostgreSQL's
        background writers, autovacuum): a gauge of how disturbed the figures are."""
        ours = self.scheduler_process_seconds + self.database_backend_seconds
        return max(self.machine_busy_seconds - ours, 0.0) / self.elapsed_seconds


def usage_between(before: CPUSnapshot, after: CPUSnapshot) -> CPUUsage:
    return CPUUsage(
        elapsed_seconds=after.epoch - before.epoch,
        scheduler_process_seconds=after.process_cpu_seconds - before.process_cpu_seconds,
        database_backend_seconds=cpu_used_since(
            before.backend_cpu_seconds, after.backend_cpu_seconds
        ),
        machine_busy_seconds=after.machine_busy_seconds - before.machine_busy_seconds,
    )


# --- loading jobs ----------------------------------------------------------------------


def _job_rows(
    total_jobs: int, every_seconds: int, spread: timedelta, first_fire: datetime
) -> Iterator[tuple[Any, ...]]:
    """COPY rows of ``total_jobs`` active ``@every`` jobs, fire times uniform over ``spread``.

    Each job's grid anchor is one period before its first fire time, so the
    schedule agrees with ``next_run_at``.
    """
    offsets = [spread * index / total_jobs for index in range(total_jobs)]
    random.Random(_SHUFFLE_SEED).shuffle(offsets)  # noqa: S311 - a reproducible layout, not a secret
    every = timedelta(seconds=every_seconds)
    columns = [column.name for column in jobs.columns]
    for offset in offsets:
        next_run_at = first_fire + offset
        job = Job(
            id=new_id(),
            name=None,
            type="noop",
            schedule=f"@every {every_seconds}s",
            timezone="UTC",
            run_at=None,
            payload={},
            queue="default",
            priority=0,
            timeout_seconds=None,
            retry=RetryPolicy(),
            status=JobStatus.ACTIVE,
            next_run_at=next_run_at,
            schedule_anchor_at=next_run_at - every,
            last_fired_at=None,
            created_at=first_fire - _LOAD_PLACEHOLDER_LEAD,
            updated_at=first_fire - _LOAD_PLACEHOLDER_LEAD,
        )
        values = job_values(job)
        yield tuple(
            Jsonb(values[name]) if isinstance(values[name], dict) else values[name]
            for name in columns
        )


def load_jobs(
    url: str, total_jobs: int, every_seconds: int, spread: timedelta, lead: timedelta
) -> float:
    """Bulk-load the jobs (COPY), then move their fire times to start at ``now() + lead``.

    Returns the seconds the load took. Ends with ``VACUUM ANALYZE jobs``, so the
    scheduler meets a tidy table with fresh planner statistics.
    """
    started = time.perf_counter()
    placeholder = datetime.now(UTC) + _LOAD_PLACEHOLDER_LEAD
    columns = sql.SQL(", ").join(sql.Identifier(column.name) for column in jobs.columns)
    with psycopg.connect(url) as connection:
        with connection.cursor() as cursor:
            copy_statement = sql.SQL("COPY jobs ({}) FROM STDIN").format(columns)
            with cursor.copy(copy_statement) as copy:
                for row in _job_rows(total_jobs, every_seconds, spread, placeholder):
                    copy.write_row(row)
        connection.execute(
            "UPDATE jobs SET next_run_at = next_run_at + (now() + %(lead)s - %(placeholder)s),"
            " schedule_anchor_at = schedule_anchor_at + (now() + %(lead)s - %(placeholder)s),"
            " created_at = now(), updated_at = now()",
            {"lead": lead, "placeholder": placeholder},
        )
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM (ANALYZE) jobs")
    return time.perf_counter() - started


def due_query_plan(url: str, batch_size: int) -> str:
    """The plan of the scheduler's claim query, node by node.

    Expect ``Index Scan using ix_jobs_due``: the partial index is what makes a
    tick cost O(due jobs).
    """
    statement = (
        "EXPLAIN (FORMAT JSON) SELECT * FROM jobs WHERE status = 'active' AND next_run_at <= now()"
        " ORDER BY next_run_at LIMIT %s FOR UPDATE SKIP LOCKED"
    )
    with psycopg.connect(url) as connection:
        row = connection.execute(statement, [batch_size]).fetchone()
    assert row is not None
    node: dict[str, Any] | None = row[0][0]["Plan"]
    steps: list[str] = []
    while node is not None:
        index = f" using {node['Index Name']}" if "Index Name" in node else ""
        steps.append(f"{node['Node Type']}{index}")
        node = node.get("Plans", [None])[0]
    return " > ".join(steps)


# --- running and observing the scheduler ----------------------------------------------


def database_name_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


@dataclass
class RunningScheduler:
    scheduler: MeasuredScheduler
    storage: RecordingStorage
    queue: RunQueue
    listener: NotificationListener | None
    task: asyncio.Task[None] = field(init=False)

    def start(self) -> None:
        if self.listener is not None:
            self.listener.start()
        self.task = asyncio.create_task(self.scheduler.run())

    async def stop(self) -> None:
        self.scheduler.request_stop()
        await self.task
        if self.listener is not None:
            await self.listener.close()
        await self.queue.close()
        await self.storage.close()


def start_scheduler(
    url: str,
    settings: SchedulerSettings,
    *,
    queue_settings: QueueSettings | None = None,
    notify_listener: bool = True,
    fired_target: int | None = None,
) -> RunningScheduler:
    """The scheduler wired as ``jobsched scheduler`` wires it (``cli.services``).

    ``queue_settings`` choose the queue as ``queue.url`` does (None: the database
    queue). ``notify_listener`` False leaves out the ``jobsched_jobs`` LISTEN
    connection, to show what NOTIFY wake-ups cost or save. ``fired_target``: set
    ``scheduler.target_reached`` once that many runs were created.
    """
    database = parse_database_url(url)
    storage = RecordingStorage(create_engine_for(database))
    queue = create_queue(queue_settings or QueueSettings(), storage)
    scheduler = MeasuredScheduler(
        storage,
        queue,
        settings,
        leadership_for(database),
        fired_target=fired_target,
    )
    listener = (
        NotificationListener(
            database, [JOBS_CHANNEL], lambda _channel, payload: scheduler.on_jobs_changed(payload)
        )
        if notify_listener
        else None
    )
    running = RunningScheduler(scheduler, storage, queue, listener)
    running.start()
    return running


async def lag_from_sql(url: str, window_start: float, window_end: float) -> dict[str, Any]:
    """Runs created in the window and their lag (created_at - scheduled_for), from the table."""
    query = """
        SELECT count(*),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_seconds),
               percentile_cont(0.99) WITHIN GROUP (ORDER BY lag_seconds),
               max(lag_seconds)
        FROM (
            SELECT extract(epoch FROM created_at - scheduled_for)::float8 AS lag_seconds
            FROM runs
            WHERE created_at >= to_timestamp(%s) AND created_at < to_timestamp(%s)
        ) AS window_runs
    """
    async with await psycopg.AsyncConnection.connect(url) as connection:
        cursor = await connection.execute(query, [window_start, window_end])
        row = await cursor.fetchone()
    assert row is not None
    count, p50, p99, maximum = row
    return {
        "fires": int(count),
        "lag_p50_seconds": p50,
        "lag_p99_seconds": p99,
        "lag_max_seconds": maximum,
    }


def commit_lags(fires: Sequence[FireRecord], window_start: float, window_end: float) -> list[float]:
    return [
        record.committed_epoch - run.scheduled_for.timestamp()
        for record in fires
        if window_start <= record.tick_now.timestamp() < window_end
        for run in record.runs
    ]


def publish_lags(
    publishes: Sequence[PublishRecord], window_start: float, window_end: float
) -> list[float]:
    """From each run's fire time to when the broker had it, for batches published in the window."""
    return [
        record.published_epoch - run.scheduled_for.timestamp()
        for record in publishes
        if window_start <= record.published_epoch < window_end
        for run in record.runs
    ]


def tick_statistics(ticks: Sequence[TickSample], elapsed_seconds: float) -> dict[str, Any]:
    cpu = [tick.cpu_seconds for tick in ticks]
    return {
        "ticks": len(ticks),
        "ticks_per_second": len(ticks) / elapsed_seconds,
        "fires_per_tick_mean": sum(tick.fired for tick in ticks) / len(ticks) if ticks else None,
        "tick_cpu_seconds_median": percentile(cpu, 0.5),
        "tick_cpu_seconds_p99": percentile(cpu, 0.99),
        "tick_cpu_seconds_mean": sum(cpu) / len(cpu) if cpu else None,
        "tick_wall_seconds_median": percentile([tick.wall_seconds for tick in ticks], 0.5),
    }
