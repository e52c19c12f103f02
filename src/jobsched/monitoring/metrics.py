"""Prometheus metrics of every jobsched process, declared once.

Names follow the original description (``jobs_started``, ``jobs_completed``,
``jobs_failed``, ``job_duration_seconds``); prometheus-client exposes counters
with the conventional ``_total`` suffix (``jobs_completed_total``).
"""

from __future__ import annotations

from importlib import metadata

from prometheus_client import Counter, Gauge, Histogram

_RUN_LABELS = ("type", "queue")

JOBS_STARTED = Counter("jobs_started", "Attempts started by workers.", _RUN_LABELS)
JOBS_COMPLETED = Counter("jobs_completed", "Runs that succeeded.", _RUN_LABELS)
JOBS_FAILED = Counter(
    "jobs_failed", "Attempts that failed (error or timeout), whether retried or not.", _RUN_LABELS
)
JOBS_RETRIED = Counter("jobs_retried", "Failed attempts followed by a retry.", _RUN_LABELS)
JOBS_TIMED_OUT = Counter("jobs_timed_out", "Attempts stopped at their timeout.", _RUN_LABELS)
JOBS_DEAD = Counter(
    "jobs_dead",
    "Runs that ended dead: out of attempts, or failed with an error that is not retried.",
    _RUN_LABELS,
)
JOB_DURATION = Histogram(
    "job_duration_seconds",
    "Wall time of one attempt, from handler start to end, by outcome: succeeded, failed, "
    "timed_out or cancelled.",
    (*_RUN_LABELS, "outcome"),
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
RUNS_IN_PROGRESS = Gauge("jobs_in_progress", "Runs executing in this worker.", _RUN_LABELS)
OUTCOMES_REFUSED = Counter(
    "worker_outcomes_refused",
    "Outcomes not recorded because the worker no longer held the run's lease.",
)
JOBS_CANCELLED = Counter(
    "jobs_cancelled",
    "Runs cancelled (through the API) while this worker executed them; their handlers stopped.",
    _RUN_LABELS,
)
JOBS_ABANDONED = Counter(
    "jobs_abandoned",
    "Attempts this worker stopped without recording an outcome, by reason: lease_lost "
    "(taken over or rescued), lease_expiring (could not renew it), shutdown (not handed back).",
    (*_RUN_LABELS, "reason"),
)
JOBS_RELEASED = Counter(
    "jobs_released",
    "Runs handed back at shutdown for another worker, their attempt not counted.",
    _RUN_LABELS,
)
WORKER_HEARTBEATS = Counter(
    "worker_heartbeats",
    "Worker heartbeats (lease renewal and registry update), by outcome: ok or failed.",
    ("outcome",),
)
WORKER_LAST_HEARTBEAT = Gauge(
    "worker_last_heartbeat_timestamp_seconds",
    "Unix time of this worker's last successful heartbeat.",
)

RUNS_FIRED = Counter("scheduler_runs_fired", "Runs created by the scheduler.", ("queue",))
RUNS_SKIPPED = Counter(
    "scheduler_runs_skipped",
    "Fire times recorded as skipped by a job's concurrency policy.",
    ("queue",),
)
RUNS_RESCUED = Counter(
    "scheduler_runs_rescued", "Runs whose lease expired, by what became of them.", ("outcome",)
)
SCHEDULER_TICK_SECONDS = Histogram(
    "scheduler_tick_seconds", "Wall time of one scheduler tick (claim, insert, publish)."
)
SCHEDULER_LEADER = Gauge(
    "scheduler_leader", "1 while this scheduler replica leads housekeeping, else 0."
)
RUNS_PRUNED = Counter("scheduler_runs_pruned", "Finished runs deleted by retention.")
QUEUE_DEPTH = Gauge("queue_depth", "Runs waiting to be claimed, per queue.", ("queue",))
NOTIFICATIONS_SENT = Counter(
    "notifications_sent",
    "Webhook delivery tries: delivered, failed (retried later) or given_up.",
    ("outcome",),
)
NOTIFICATIONS_BACKLOG = Gauge(
    "notifications_backlog", "Webhook deliveries recorded and not yet delivered or given up."
)

HTTP_REQUESTS = Counter("api_requests", "API requests answered.", ("method", "route", "status"))

CACHE_REQUESTS = Counter(
    "api_cache_requests",
    "Job lookups in the API's metadata cache: hit, miss, or error (answered from the database).",
    ("result",),
)
CACHE_WRITE_ERRORS = Counter(
    "api_cache_write_errors",
    "Cache stores and invalidations that failed; the entry may be stale until its TTL ends.",
    ("operation",),
)

# Operations metrics named by deploy/grafana/jobsched.json and deploy/prometheus/alerts.yml.
SCHEDULER_FIRE_LAG = Histogram(
    "scheduler_fire_lag_seconds",
    "Time from a fire time to the scheduler committing its run (how late jobs fire).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
OUTBOX_BACKLOG = Gauge(
    "outbox_backlog",
    "Runs committed and due but not yet published to the broker (Redis or RabbitMQ queue).",
)
LEASE_RESCUES = Counter(
    "lease_rescues",
    "Runs taken back from a worker whose lease expired (worker killed, frozen or cut off).",
)
WORKER_SLOTS_BUSY = Gauge(
    "worker_slots_busy",
    "Execution slots of this worker (worker.concurrency in all) running a handler now.",
)
BUILD_INFO = Gauge(
    "build_info", "Always 1; the labels say which jobsched version this process runs.", ("version",)
)


def export_build_info() -> None:
    """Set ``build_info{version}`` to 1 for the installed jobsched (every service calls it)."""
    try:
        version = metadata.version("jobsched")
    except metadata.PackageNotFoundError:
        version = "unknown"
    BUILD_INFO.labels(version=version).set(1)
