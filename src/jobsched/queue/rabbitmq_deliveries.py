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
from aiormq.exceptions import ChannelInvalidStateError


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


class UnsettledTags:
    """Delivery tags received and not yet settled, per channel: which acks can share a frame.

    AMQP's ``basic.ack`` with ``multiple`` settles every unsettled delivery up to its
    tag on that channel. Acking a batch of runs that end together can therefore take
    one frame instead of one each, but only for the tags below the lowest one still
    unsettled: a delivery still buffered, being claimed or running must never be
    acked with them (its message would be gone with its run not started or not
    finished). So every delivery of the consuming channel must be noted here when
    it arrives (``received``) and forgotten when settled (``settled``).
    """

    def __init__(self) -> None:
        self._by_channel: dict[object, set[int]] = {}

    def received(self, delivery: AbstractIncomingMessage) -> None:
        channel = _channel_of(delivery)
        if channel is None:
            return
        if channel not in self._by_channel:
            # One consuming channel at a time: one seen before this one has closed, and
            # the broker requeued its unsettled deliveries.
            self._by_channel.clear()
        self._by_channel.setdefault(channel, set()).add(delivery.delivery_tag or 0)

    def settled(self, delivery: AbstractIncomingMessage) -> None:
        tags = self._by_channel.get(_channel_of(delivery))
        if tags is not None:
            tags.discard(delivery.delivery_tag or 0)

    def clear(self) -> None:
        self._by_channel.clear()

    def plan_acks(
        self, deliveries: list[AbstractIncomingMessage]
    ) -> list[tuple[AbstractIncomingMessage, bool]]:
        """The acks that settle ``deliveries``: (delivery, multiple) pairs, fewest frames.

        Per channel, the deliveries below every other unsettled tag collapse into one
        ``multiple`` ack of the highest of them; the rest are acked one by one.
        """
        by_channel: dict[object, list[AbstractIncomingMessage]] = {}
        for delivery in deliveries:
            by_channel.setdefault(_channel_of(delivery), []).append(delivery)
        plan: list[tuple[AbstractIncomingMessage, bool]] = []
        for channel, batch in by_channel.items():
            acking = {delivery.delivery_tag or 0 for delivery in batch}
            unsettled = self._by_channel.get(channel)
            if channel is None or unsettled is None:  # closed, or never seen: one by one
                plan.extend((delivery, False) for delivery in batch)
                continue
            others = unsettled - acking
            floor = min(others) if others else None
            below = sorted(
                (
                    delivery
                    for delivery in batch
                    if floor is None or (delivery.delivery_tag or 0) < floor
                ),
                key=lambda delivery: delivery.delivery_tag or 0,
            )
            if len(below) > 1:
                plan.append((below[-1], True))
                covered = {id(delivery) for delivery in below}
                rest = [delivery for delivery in batch if id(delivery) not in covered]
            else:
                rest = batch
            plan.extend((delivery, False) for delivery in rest)
        return plan


def _channel_of(delivery: AbstractIncomingMessage) -> object | None:
    """The channel a delivery came on; None once it closed (aio-pika raises then)."""
    try:
        return delivery.channel
    except ChannelInvalidStateError:
        return None
