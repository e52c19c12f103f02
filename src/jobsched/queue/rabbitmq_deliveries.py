"""Deliveries a RabbitMQ consumer pushed to this process, waiting for a worker's next claim.

The broker sends up to ``prefetch_count`` messages ahead; they wait here, highest
AMQP priority first (then in arrival order), until ``claim`` takes them. Nothing is
lost by waiting: a delivery stays unacknowledged at the broker until it is acked or
rejected, and comes back to some consumer if this process goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools

from aio_pika.abc import AbstractIncomingMessage


class DeliveryBuffer:
    def __init__(self) -> None:
        self._heap: list[tuple[int, int, AbstractIncomingMessage]] = []
        self._sequence = itertools.count()
        # An Event, not an asyncio.Queue: waiting on it under a timeout can never
        # swallow an item the way a cancelled ``Queue.get`` may.
        self._arrived = asyncio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def put(self, message: AbstractIncomingMessage) -> None:
        heapq.heappush(self._heap, (-(message.priority or 0), next(self._sequence), message))
        self._arrived.set()

    def put_back(self, messages: list[AbstractIncomingMessage]) -> None:
        """Return taken deliveries (a claim failed); they keep their priority, not their turn."""
        for message in messages:
            self.put(message)

    def wake(self) -> None:
        """End every wait at once (the queue is closing)."""
        self._arrived.set()

    async def take(self, limit: int, wait_seconds: float) -> list[AbstractIncomingMessage]:
        """Up to ``limit`` deliveries; if none is here, wait up to ``wait_seconds`` for one."""
        if not self._heap and wait_seconds > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_seconds):
                    await self._arrived.wait()
        taken: list[AbstractIncomingMessage] = []
        while self._heap and len(taken) < limit:
            taken.append(heapq.heappop(self._heap)[2])
        return taken

    def drain(self) -> list[AbstractIncomingMessage]:
        """Everything buffered, emptying the buffer."""
        messages = [entry[2] for entry in self._heap]
        self._heap.clear()
        return messages
