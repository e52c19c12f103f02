"""The threads sync handlers run in: one daemon thread per call.

Not a ``ThreadPoolExecutor``, on purpose. A thread cannot be stopped from outside,
so a sync handler that ignores ``context.cancelled`` keeps its thread after its
attempt was given up (timeout, cancellation, lost lease, shutdown). In a fixed pool
such a thread would hold a slot and later runs would queue behind it; and the
interpreter joins pool threads at exit, so one stuck handler would keep a stopped
worker from ever exiting. A fresh daemon thread per call (tens of microseconds,
next to the database round trips of every run) has neither problem: the worker's
``concurrency`` bounds the runs in flight, and at exit a stuck thread dies with
the process (its run is then rescued by lease expiry).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

THREAD_NAME_PREFIX = "jobsched-handler"


class HandlerThreads(Executor):
    """An ``Executor`` that runs each submitted call in a new daemon thread."""

    def __init__(self, thread_name_prefix: str = THREAD_NAME_PREFIX) -> None:
        self._thread_name_prefix = thread_name_prefix
        self._numbers = itertools.count(1)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as error:  # handed to the waiting coroutine, whatever it is
                future.set_exception(error)
            else:
                future.set_result(result)

        name = f"{self._thread_name_prefix}-{next(self._numbers)}"
        threading.Thread(target=work, name=name, daemon=True).start()
        return future
