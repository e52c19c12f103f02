"""Scheduler benchmark: tick cost follows due jobs, not total jobs.

Two steady scenarios with the same due rate, each on a fresh PostgreSQL database:

* ``baseline``: ``--baseline-jobs`` (10,000) jobs ``@every 60s`` whose fire times
  are spread uniformly over one minute: 10,000 fires a minute;
* ``large``: ``--jobs`` (100,000) jobs ``@every 600s`` spread uniformly over ten
  minutes, so a tenth of them fire each minute: the same 10,000 fires a minute.

Fire times are shuffled over the rows (as jobs created over time would be), so the
heap order does not follow ``next_run_at``. The real ``Scheduler.run()`` loop runs
in this process, on the database queue first, with the NOTIFY listener and housekeeping
leadership wired as ``jobsched scheduler`` wires them; no workers, so runs just
accumulate. After a warm-up, a window measures: fires per second, scheduling lag
(``runs.created_at - runs.scheduled_for`` from SQL: when the tick saw the fire
time), commit lag (when the transaction creating the run had committed, i.e. when
a worker could claim it), the CPU time of each ``tick()`` (``time.process_time``),
the whole scheduler process's CPU and that of its PostgreSQL backends (``/proc``).

A burst probe then gives ``--burst-jobs`` (20,000) jobs that are all due at once
and times how long the scheduler takes to fire them all: its peak throughput.

Then the large scenario runs again on each broker queue (``--scheduler-backend``
redis, rabbitmq), in its own namespace, removed afterwards: the scheduler commits
runs unpublished and its outbox hands them to the broker, inside the tick and in
its sweeps. Its queue lag (fire time -> the broker had the run) is compared with
the database queue's (fire time -> the run was committed): each is when a worker
could first take the run.

Run: ``make bench``, ``python -m bench.scheduler_bench [--window-seconds 60]``
or ``python bench/scheduler_bench.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script (`python bench/scheduler_bench.py`): make the `bench` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.deployment import BACKENDS, BROKER_URLS, new_namespace, purge_broker
from bench.scheduler_harness import (
    RunningScheduler,
    commit_lags,
    cpu_snapshot,
    database_name_of,
    due_query_plan,
    lag_from_sql,
    load_jobs,
    publish_lags,
    start_scheduler,
    tick_statistics,
    usage_between,
)
from bench.support import (
    BenchmarkReport,
    SummaryRow,
    admin_url_from_environment,
    configure_logging,
    describe_machine,
    format_table,
    fresh_postgres_database,
    percentile,
    write_results,
)
from jobsched.config.settings import QueueSettings, SchedulerSettings
from jobsched.queue import queue_scheme

logger = logging.getLogger("bench.scheduler")

NAME = "scheduler"
# The steady stream starts this long after its jobs are loaded: the scheduler runs by then.
_STEADY_START_LEAD = timedelta(seconds=2)
# Burst jobs were all due within this span before the scheduler starts (well inside
# the 60 s misfire grace, so they fire as ordinary on-time runs).
_BURST_DUE_SPAN = timedelta(seconds=5)
_BURST_EVERY_SECONDS = 3600  # never fires twice during the probe


@dataclass(frozen=True, slots=True)
class SteadyScenario:
    """``total_jobs`` interval jobs of period ``every_seconds``, fire times spread evenly."""

    name: str
    total_jobs: int
    every_seconds: int

    @property
    def due_per_minute(self) -> float:
        return self.total_jobs * 60 / self.every_seconds


@dataclass(frozen=True, slots=True)
class BenchmarkOptions:
    admin_url: str
    window_seconds: float
    warmup_seconds: float
    scenarios: tuple[SteadyScenario, ...]
    burst_jobs: int
    burst_timeout_seconds: float
    batch_size: int
    notify_listener: bool
    backends: tuple[str, ...]

    def scheduler_settings(self) -> SchedulerSettings:
        return SchedulerSettings(batch_size=self.batch_size)


# --- measuring ----------------------------------------------------------------------------


def _per_thousand_fires(seconds: float, fires: int) -> float | None:
    return seconds / fires * 1000 if fires else None


def _queue_settings(backend: str, namespace: str) -> QueueSettings:
    return QueueSettings(url=BROKER_URLS.get(backend), namespace=namespace)


def _queue_lags(running: RunningScheduler, start: float, end: float) -> list[float]:
    """When a worker could first take each run: at commit on the database queue, else once
    the broker had it (published by the outbox, inside the tick or by its sweep)."""
    if running.queue.commits_are_publishes:
        return commit_lags(running.storage.fires, start, end)
    return publish_lags(running.storage.publishes, start, end)


async def measure_steady(
    url: str, scenario: SteadyScenario, options: BenchmarkOptions, queue: QueueSettings
) -> dict[str, Any]:
    """Warm up, then measure the real scheduler over one window of the steady stream."""
    running = start_scheduler(
        url,
        options.scheduler_settings(),
        queue_settings=queue,
        notify_listener=options.notify_listener,
    )
    try:
        # A benchmark measures the wall clock: these sleeps are the subject, not a sync.
        await asyncio.sleep(options.warmup_seconds)
        before = await cpu_snapshot(options.admin_url, database_name_of(url))
        first_tick = len(running.scheduler.ticks)
        await asyncio.sleep(options.window_seconds)
        after = await cpu_snapshot(options.admin_url, database_name_of(url))
        window_ticks = running.scheduler.ticks[first_tick:]
    finally:
        await running.stop()
    usage = usage_between(before, after)
    from_sql = await lag_from_sql(url, before.epoch, after.epoch)
    lags = commit_lags(running.storage.fires, before.epoch, after.epoch)
    queue_lags = _queue_lags(running, before.epoch, after.epoch)
    fires = from_sql["fires"]
    return {
        "scenario": scenario.name,
        "queue_backend": queue_scheme(queue.url),
        "total_jobs": scenario.total_jobs,
        "every_seconds": scenario.every_seconds,
        "due_per_minute": scenario.due_per_minute,
        "window_seconds": usage.elapsed_seconds,
        **from_sql,
        "fires_per_second": fires / usage.elapsed_seconds,
        "commit_lag_p50_seconds": percentile(lags, 0.5),
        "commit_lag_p99_seconds": percentile(lags, 0.99),
        "queue_lag_p50_seconds": percentile(queue_lags, 0.5),
        "queue_lag_p99_seconds": percentile(queue_lags, 0.99),
        **tick_statistics(window_ticks, usage.elapsed_seconds),
        "scheduler_cpu_seconds": usage.scheduler_process_seconds,
        "scheduler_cpu_seconds_per_1000_fires": _per_thousand_fires(
            usage.scheduler_process_seconds, fires
        ),
        "database_cpu_seconds": usage.database_backend_seconds,
        "database_cpu_seconds_per_1000_fires": _per_thousand_fires(
            usage.database_backend_seconds, fires
        ),
        "other_load_cores": usage.other_load_cores,
    }


async def measure_burst(url: str, options: BenchmarkOptions) -> dict[str, Any]:
    """Start the scheduler on ``burst_jobs`` jobs all due already; time until every one fired."""
    before = await cpu_snapshot(options.admin_url, database_name_of(url))
    running = start_scheduler(
        url,
        options.scheduler_settings(),
        notify_listener=options.notify_listener,
        fired_target=options.burst_jobs,
    )
    try:
        await asyncio.wait_for(
            running.scheduler.target_reached.wait(), options.burst_timeout_seconds
        )
        after = await cpu_snapshot(options.admin_url, database_name_of(url))
    finally:
        await running.stop()
    usage = usage_between(before, after)
    ticks = running.scheduler.ticks
    fired = running.scheduler.fired_total
    # From the first tick's start to the commit of the last run: startup is not counted.
    seconds_to_fire_all = running.storage.fires[-1].committed_epoch - ticks[0].started_epoch
    return {
        "scenario": "burst",
        "total_jobs": options.burst_jobs,
        "fired": fired,
        "seconds_to_fire_all": seconds_to_fire_all,
        "fires_per_second": fired / seconds_to_fire_all,
        **tick_statistics(ticks, seconds_to_fire_all),
        "scheduler_cpu_seconds": usage.scheduler_process_seconds,
        "scheduler_cpu_seconds_per_1000_fires": _per_thousand_fires(
            usage.scheduler_process_seconds, fired
        ),
        "database_cpu_seconds": usage.database_backend_seconds,
        "database_cpu_seconds_per_1000_fires": _per_thousand_fires(
            usage.database_backend_seconds, fired
        ),
        "other_load_cores": usage.other_load_cores,
    }


def run_steady_scenario(
    scenario: SteadyScenario, options: BenchmarkOptions, backend: str = "database"
) -> dict[str, Any]:
    namespace = new_namespace()
    with fresh_postgres_database(options.admin_url) as url:
        spread = timedelta(seconds=scenario.every_seconds)
        load_seconds = load_jobs(
            url, scenario.total_jobs, scenario.every_seconds, spread, _STEADY_START_LEAD
        )
        plan = due_query_plan(url, options.batch_size)
        logger.info(
            "%s on the %s queue: loaded %d jobs in %.1f s (due query: %s);"
            " measuring %.0f s after %.0f s warm-up",
            scenario.name,
            backend,
            scenario.total_jobs,
            load_seconds,
            plan,
            options.window_seconds,
            options.warmup_seconds,
        )
        try:
            queue = _queue_settings(backend, namespace)
            result = asyncio.run(measure_steady(url, scenario, options, queue))
        finally:
            purge_broker(url, backend, namespace)
    return {**result, "load_seconds": load_seconds, "due_query_plan": plan}


def run_burst(options: BenchmarkOptions) -> dict[str, Any]:
    with fresh_postgres_database(options.admin_url) as url:
        load_seconds = load_jobs(
            url, options.burst_jobs, _BURST_EVERY_SECONDS, _BURST_DUE_SPAN, -_BURST_DUE_SPAN
        )
        logger.info("burst: loaded %d due jobs in %.1f s", options.burst_jobs, load_seconds)
        result = asyncio.run(measure_burst(url, options))
    return {**result, "load_seconds": load_seconds}


# --- reporting ----------------------------------------------------------------------------


def _milliseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


Column = tuple[str, Callable[[dict[str, Any]], str]]

_STEADY_COLUMNS: list[Column] = [
    ("scenario", lambda row: str(row["scenario"])),
    ("queue", lambda row: str(row["queue_backend"])),
    ("total jobs", lambda row: f"{row['total_jobs']:,}"),
    ("due/min", lambda row: _number(row["due_per_minute"], 0)),
    ("fires/s", lambda row: _number(row["fires_per_second"])),
    ("lag p50 ms", lambda row: _milliseconds(row["lag_p50_seconds"])),
    ("lag p99 ms", lambda row: _milliseconds(row["lag_p99_seconds"])),
    ("commit lag p50 ms", lambda row: _milliseconds(row["commit_lag_p50_seconds"])),
    ("commit lag p99 ms", lambda row: _milliseconds(row["commit_lag_p99_seconds"])),
    ("queue lag p50 ms", lambda row: _milliseconds(row["queue_lag_p50_seconds"])),
    ("queue lag p99 ms", lambda row: _milliseconds(row["queue_lag_p99_seconds"])),
    ("ticks/s", lambda row: _number(row["ticks_per_second"])),
    ("fires/tick", lambda row: _number(row["fires_per_tick_mean"], 2)),
    ("CPU ms/tick (median)", lambda row: _milliseconds(row["tick_cpu_seconds_median"])),
    ("CPU s/1k fires", lambda row: _number(row["scheduler_cpu_seconds_per_1000_fires"], 3)),
    ("DB CPU s/1k fires", lambda row: _number(row["database_cpu_seconds_per_1000_fires"], 3)),
    ("other load (cores)", lambda row: _number(row["other_load_cores"], 2)),
]

_BURST_COLUMNS: list[Column] = [
    ("burst: jobs due at once", lambda row: f"{row['total_jobs']:,}"),
    ("seconds to fire all", lambda row: _number(row["seconds_to_fire_all"], 2)),
    ("fires/s", lambda row: _number(row["fires_per_second"], 0)),
    ("ticks", lambda row: str(row["ticks"])),
    ("CPU ms/tick (median)", lambda row: _milliseconds(row["tick_cpu_seconds_median"])),
    ("CPU s/1k fires", lambda row: _number(row["scheduler_cpu_seconds_per_1000_fires"], 3)),
    ("DB CPU s/1k fires", lambda row: _number(row["database_cpu_seconds_per_1000_fires"], 3)),
    ("other load (cores)", lambda row: _number(row["other_load_cores"], 2)),
]

# Compared large over baseline: each ≈ 1 when cost follows due jobs, not total jobs.
_RATIO_KEYS = (
    "tick_cpu_seconds_median",
    "tick_wall_seconds_median",
    "scheduler_cpu_seconds_per_1000_fires",
    "database_cpu_seconds_per_1000_fires",
    "lag_p50_seconds",
    "lag_p99_seconds",
)


def _table(columns: list[Column], rows: Sequence[dict[str, Any]]) -> str:
    return format_table(
        [header for header, _ in columns], [[cell(row) for _, cell in columns] for row in rows]
    )


def ratios(large: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float | None]:
    """The large scenario's figures over the baseline's (None where a figure is missing)."""
    return {
        key: large[key] / baseline[key] if large[key] is not None and baseline[key] else None
        for key in _RATIO_KEYS
    }


def render(results: dict[str, Any]) -> str:
    parts = [_table(_STEADY_COLUMNS, [*results["steady"], *results["brokers"]])]
    if results["ratios"] is not None:
        parts.append(
            "large / baseline: "
            + ", ".join(f"{key} {_number(value, 2)}" for key, value in results["ratios"].items())
        )
    if results["burst"] is not None:
        parts.append(_table(_BURST_COLUMNS, [results["burst"]]))
    return "\n\n".join(parts)


# --- entry points -------------------------------------------------------------------------


def _float_from_environment(variable: str, default: float) -> float:
    return float(os.environ.get(variable, default))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scheduler_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--window-seconds",
        type=float,
        default=_float_from_environment("BENCH_WINDOW_SECONDS", 60.0),
        help="measurement window per steady scenario (env BENCH_WINDOW_SECONDS; default 60)",
    )
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=_float_from_environment("BENCH_WARMUP_SECONDS", 10.0),
        help="scheduler running before the window opens (env BENCH_WARMUP_SECONDS; default 10)",
    )
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs in the large scenario")
    parser.add_argument(
        "--baseline-jobs", type=int, default=10_000, help="jobs in the baseline scenario"
    )
    parser.add_argument(
        "--due-per-minute", type=int, default=10_000, help="fires per minute in both scenarios"
    )
    parser.add_argument(
        "--burst-jobs", type=int, default=20_000, help="jobs due at once (0: no burst probe)"
    )
    parser.add_argument("--burst-timeout-seconds", type=float, default=180.0)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=SchedulerSettings().batch_size,
        help="scheduler.batch_size (default: the shipped default)",
    )
    parser.add_argument(
        "--scheduler-backend",
        action="append",
        choices=BACKENDS,
        help="queue backend (repeatable; default: all three); on redis and rabbitmq only the"
        " large scenario runs, compared with the same scenario on the database queue",
    )
    parser.add_argument(
        "--without-notify-listener",
        action="store_true",
        help="run the scheduler without its jobsched_jobs LISTEN connection",
    )
    parser.add_argument(
        "--admin-url",
        default=admin_url_from_environment(),
        help="PostgreSQL URL allowed to CREATE DATABASE (env BENCH_POSTGRES_URL)",
    )
    return parser


def _steady_scenario(name: str, total_jobs: int, due_per_minute: int) -> SteadyScenario:
    every_seconds, remainder = divmod(total_jobs * 60, due_per_minute)
    if remainder or every_seconds < 1:
        raise SystemExit(
            f"{total_jobs} jobs cannot give exactly {due_per_minute} fires/min with a whole-second"
            " @every period: pick counts where jobs * 60 / due-per-minute is a whole number"
        )
    return SteadyScenario(name, total_jobs, every_seconds)


def parse_options(argv: Sequence[str]) -> BenchmarkOptions:
    # Unknown options belong to the other benchmarks ``bench.run`` hands the same argv to.
    arguments, _unknown = _parser().parse_known_args(list(argv))
    # The baseline runs first: its figures are the yardstick for the large one.
    scenarios = (
        _steady_scenario("baseline", arguments.baseline_jobs, arguments.due_per_minute),
        _steady_scenario("large", arguments.jobs, arguments.due_per_minute),
    )
    return BenchmarkOptions(
        admin_url=arguments.admin_url,
        window_seconds=arguments.window_seconds,
        warmup_seconds=arguments.warmup_seconds,
        scenarios=scenarios,
        burst_jobs=arguments.burst_jobs,
        burst_timeout_seconds=arguments.burst_timeout_seconds,
        batch_size=arguments.batch_size,
        notify_listener=not arguments.without_notify_listener,
        backends=tuple(arguments.scheduler_backend or BACKENDS),
    )


_SCENARIO_BASELINE = "jobsched, {jobs:,}-job scenario (Celery beat has no comparable mode)"
_DATABASE_QUEUE_BASELINE = "jobsched, the same scenario on the database queue"

# metric, result key, scale to the unit shown, higher is better, digits
_SUMMARY_METRICS: list[tuple[str, str, float, bool, int]] = [
    ("fires/s", "fires_per_second", 1, True, 1),
    ("lag p50 ms", "lag_p50_seconds", 1000, False, 1),
    ("lag p99 ms", "lag_p99_seconds", 1000, False, 1),
    ("queue lag p50 ms", "queue_lag_p50_seconds", 1000, False, 1),
    ("queue lag p99 ms", "queue_lag_p99_seconds", 1000, False, 1),
    ("scheduler CPU s/1k fires", "scheduler_cpu_seconds_per_1000_fires", 1, False, 2),
]


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else value * scale


def _compared(
    result: dict[str, Any], baseline: dict[str, Any] | None, baseline_name: str
) -> list[SummaryRow]:
    label = f"{result['total_jobs']:,} jobs, {result['due_per_minute']:,.0f} due/min"
    return [
        SummaryRow(
            "scheduler",
            result["queue_backend"],
            f"{metric} ({label})",
            _scaled(result[key], scale),
            None if baseline is None else _scaled(baseline[key], scale),
            baseline_name if baseline is not None else "none",
            higher_is_better,
            digits,
        )
        for metric, key, scale, higher_is_better, digits in _SUMMARY_METRICS
    ]


def summary_rows(results: dict[str, Any]) -> list[SummaryRow]:
    """Database queue: the large scenario against the small one, and the burst (no baseline).

    Broker queues: the large scenario against the same on the database queue.
    """
    steady = {result["scenario"]: result for result in results["steady"]}
    rows = []
    if steady:
        baseline_name = _SCENARIO_BASELINE.format(jobs=steady["baseline"]["total_jobs"])
        rows += _compared(steady["large"], steady["baseline"], baseline_name)
    burst = results["burst"]
    if burst is not None:
        rows.append(
            SummaryRow(
                "scheduler",
                "database",
                f"fires/s, burst of {burst['total_jobs']:,} due at once",
                burst["fires_per_second"],
                None,
                "none",
                True,
            )
        )
    for result in results["brokers"]:
        rows += _compared(result, steady.get("large"), _DATABASE_QUEUE_BASELINE)
    return rows


def run(argv: Sequence[str]) -> BenchmarkReport:
    """Run every scenario, write the JSON results and return the report."""
    options = parse_options(argv)
    started_at = datetime.now(UTC)
    machine = describe_machine(options.admin_url)
    on_database = "database" in options.backends
    steady = (
        [run_steady_scenario(scenario, options) for scenario in options.scenarios]
        if on_database
        else []
    )
    burst = run_burst(options) if on_database and options.burst_jobs > 0 else None
    large = options.scenarios[1]
    brokers = [
        run_steady_scenario(large, options, backend)
        for backend in options.backends
        if backend != "database"
    ]
    results: dict[str, Any] = {
        "benchmark": NAME,
        "started_at": started_at.isoformat(),
        "machine": machine,
        "options": {key: value for key, value in asdict(options).items() if key != "admin_url"},
        "steady": steady,
        "ratios": ratios(steady[1], steady[0]) if steady else None,
        "burst": burst,
        "brokers": brokers,
        "load_average_after": list(os.getloadavg()),
    }
    results["table"] = render(results)
    rows = tuple(summary_rows(results))
    return BenchmarkReport(NAME, results["table"], write_results(NAME, results), rows)


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    report = run(sys.argv[1:] if argv is None else argv)
    print(report.table)
    print(f"\nresults: {report.results_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
