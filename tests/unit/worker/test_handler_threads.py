"""Sync handlers' threads: one daemon thread per call, results and errors handed back."""

from __future__ import annotations

import asyncio
import threading

import pytest

from jobsched.worker.threads import HandlerThreads


async def test_each_call_gets_a_named_daemon_thread() -> None:
    threads = HandlerThreads()

    def which() -> tuple[str, bool]:
        current = threading.current_thread()
        return current.name, current.daemon

    first = await asyncio.wrap_future(threads.submit(which))
    second = await asyncio.wrap_future(threads.submit(which))
    assert first == ("jobsched-handler-1", True)
    assert second == ("jobsched-handler-2", True)


async def test_errors_reach_the_caller() -> None:
    def fails() -> None:
        raise ValueError("from the thread")

    with pytest.raises(ValueError, match="from the thread"):
        await asyncio.wrap_future(HandlerThreads().submit(fails))


async def test_a_blocked_call_does_not_hold_up_the_next() -> None:
    """A stuck handler keeps its own thread; later calls get theirs (no fixed pool)."""
    threads = HandlerThreads()
    release = threading.Event()
    blocked = threads.submit(release.wait, 20)
    try:
        assert await asyncio.wrap_future(threads.submit(lambda: "next")) == "next"
        assert not blocked.done()
    finally:
        release.set()
    assert await asyncio.wrap_future(blocked) is True
