"""The Celery baseline: an app on a Redis broker, a ``noop`` task and a ``record_start`` task.

Started by ``celery -A bench.celery_baseline worker`` (from the repository root).
The broker is Redis database 15 (``BROKER_URL``), never 0: the benchmarks flush
it before and after, and database 0 is jobsched's. There is no result backend:
the tasks keep no result. ``noop`` only appends ``"<start> <end>"`` (epoch
seconds) to a Redis list, one round trip per task, so the drain benchmark can
time the first start and the last end. ``record_start`` appends
``"<sent> <start>"``, so the latency benchmark can take one from the other. Those
appends are the Celery tasks' only record; jobsched records each run's attempt
durably in PostgreSQL instead.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from celery import Celery

BROKER_REDIS_DATABASE = 15
BROKER_URL = f"redis://127.0.0.1:6379/{BROKER_REDIS_DATABASE}"
TIMINGS_KEY = "jobsched-bench:celery-noop-timings"
STARTS_KEY = "jobsched-bench:celery-start-times"
NOOP_TASK_NAME = "bench.noop"
RECORD_START_TASK_NAME = "bench.record_start"

app = Celery("jobsched_bench", broker=BROKER_URL)
app.conf.update(
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
# redis-py's pool notices a fork and reconnects, so prefork children may share this.
_timings = redis.Redis.from_url(BROKER_URL)


def _noop() -> None:
    """Do nothing but record when it started and ended."""
    started = time.time()
    _timings.rpush(TIMINGS_KEY, f"{started} {time.time()}")


# Called, not used as a decorator: Celery is untyped, and a decorator would untype _noop.
noop: Any = app.task(name=NOOP_TASK_NAME, ignore_result=True)(_noop)


def _record_start(sent_at: float) -> None:
    """Record when the task was sent (``sent_at``, epoch seconds) and when it started."""
    started = time.time()
    _timings.rpush(STARTS_KEY, f"{sent_at} {started}")


record_start: Any = app.task(name=RECORD_START_TASK_NAME, ignore_result=True)(_record_start)


def enqueue_noops(count: int, queue: str | None = None) -> float:
    """Put ``count`` noop tasks on the broker over one connection; return the seconds it took.

    One producer publishing in a loop is Celery's fastest bulk enqueue: it has no
    batch publish (a ``group`` sends one message per task the same way, with more
    bookkeeping). ``queue`` None is Celery's default queue.
    """
    options: dict[str, Any] = {} if queue is None else {"queue": queue}
    started = time.monotonic()
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            noop.apply_async(producer=producer, **options)
    return time.monotonic() - started
