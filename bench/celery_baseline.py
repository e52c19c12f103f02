"""The Celery side of the drain benchmark: an app on a Redis broker and one ``noop`` task.

Started by ``celery -A bench.celery_baseline worker`` (from the repository root).
The broker is Redis database 15 (``BROKER_URL``), never 0: the benchmark flushes
it before and after, and database 0 is jobsched's. There is no result backend: the task keeps no
result, it only appends ``"<start> <end>"`` (epoch seconds) to a Redis list,
one round trip per task, so the benchmark can time the first start and the last
end. That append is the Celery task's only record; jobsched's noop run records
its attempt durably in PostgreSQL instead.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from celery import Celery

BROKER_REDIS_DATABASE = 15
BROKER_URL = f"redis://127.0.0.1:6379/{BROKER_REDIS_DATABASE}"
TIMINGS_KEY = "jobsched-bench:celery-noop-timings"
NOOP_TASK_NAME = "bench.noop"

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
