"""Which acks of a batch of RabbitMQ deliveries may share one ``multiple`` frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from aio_pika.abc import AbstractIncomingMessage

from jobsched.queue.rabbitmq_deliveries import UnsettledTags


@dataclass(eq=False)
class Delivery:
    """What ``UnsettledTags`` reads of a delivery: its channel and tag."""

    channel: object
    delivery_tag: int


def deliveries(channel: object, *tags: int) -> list[AbstractIncomingMessage]:
    return [cast(AbstractIncomingMessage, Delivery(channel, tag)) for tag in tags]


def plan(tracker: UnsettledTags, batch: list[AbstractIncomingMessage]) -> list[tuple[int, bool]]:
    return sorted(
        (cast(Any, delivery).delivery_tag, multiple)
        for delivery, multiple in tracker.plan_acks(batch)
    )


def received(tracker: UnsettledTags, batch: list[AbstractIncomingMessage]) -> None:
    for delivery in batch:
        tracker.received(delivery)


def test_a_batch_below_every_other_unsettled_tag_is_one_multiple_ack() -> None:
    tracker = UnsettledTags()
    channel = object()
    every = deliveries(channel, 1, 2, 3, 4, 5)
    received(tracker, every)

    assert plan(tracker, every[:3]) == [(3, True)]


def test_a_delivery_above_an_unsettled_one_is_acked_alone() -> None:
    tracker = UnsettledTags()
    channel = object()
    every = deliveries(channel, 1, 2, 3, 4, 5)
    received(tracker, every)

    # 3 is still running: the ack of 4 must not cover it.
    assert plan(tracker, [every[0], every[1], every[3]]) == [(2, True), (4, False)]


def test_settled_tags_no_longer_hold_back_later_batches() -> None:
    tracker = UnsettledTags()
    channel = object()
    every = deliveries(channel, 1, 2, 3, 4)
    received(tracker, every)
    tracker.settled(every[0])
    tracker.settled(every[1])

    assert plan(tracker, every[2:]) == [(4, True)]


def test_a_single_delivery_is_a_plain_ack() -> None:
    tracker = UnsettledTags()
    channel = object()
    every = deliveries(channel, 7, 9)
    received(tracker, every)

    assert plan(tracker, [every[1]]) == [(9, False)]
    assert plan(tracker, [every[0]]) == [(7, False)]


def test_a_new_channel_forgets_the_closed_ones_tags() -> None:
    tracker = UnsettledTags()
    old, new = object(), object()
    received(tracker, deliveries(old, 1, 2))
    fresh = deliveries(new, 1, 2, 3)
    received(tracker, fresh)

    assert plan(tracker, fresh[:2]) == [(2, True)]


def test_deliveries_of_a_channel_never_seen_are_acked_one_by_one() -> None:
    tracker = UnsettledTags()
    unknown = deliveries(object(), 1, 2)

    assert plan(tracker, unknown) == [(1, False), (2, False)]
