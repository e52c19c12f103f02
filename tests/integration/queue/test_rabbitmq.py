"""The RabbitMQ queue against a real RabbitMQ and PostgreSQL: what only this backend does.

Every test has a namespace of its own (queue and exchange names) and deletes it
afterwards. The broker is inspected with plain AMQP (passive declares) and with
``rabbitmqctl list_queues``, which also reports unacknowledged deliveries.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import cast

import aio_pika
import pytest
from aio_pika.exceptions import ChannelNotFoundEntity

from jobsched.config.settings import QueueSettings
from jobsched.core.errors import QueueError, StorageError
from jobsched.core.models import JobSpec, Run, RunStatus
from jobsched.queue.rabbitmq import RabbitMQQueue
from jobsched.queue.rabbitmq_topology import (
    MAX_AMQP_PRIORITY,
    Topology,
    amqp_priority,
    choose_queue_type,
    parse_server_version,
)
from jobsched.storage.base import Storage
from jobsched.storage.database import SQLStorage
from tests.helpers import create_due_run, wait_until
from tests.queue_backends import RABBITMQ_URL, isolated_queue_settings, open_queue

UNREACHABLE_URL = "amqp://guest:guest@127.0.0.1:1/"
WORKER = "worker-a"
LEASE_SECONDS = 30.0


# --- fixtures and helpers ----------------------------------------------------------


@pytest.fixture
async def storage(postgres_url: str) -> AsyncIterator[SQLStorage]:
    """PostgreSQL only: a RabbitMQ deployment always has it as its source of truth."""
    store = SQLStorage.from_url(postgres_url)
    yield store
    await store.close()


OpenQueue = Callable[..., Awaitable[RabbitMQQueue]]


@pytest.fixture
async def open_rabbitmq(storage: SQLStorage) -> AsyncIterator[OpenQueue]:
    """Open RabbitMQ queues (several may share a namespace); all closed and purged after."""
    opened: list[RabbitMQQueue] = []

    async def open_queue(
        settings: QueueSettings,
        *,
        prefetch_count: int = 10,
        storage_override: Storage | None = None,
    ) -> RabbitMQQueue:
        queue = RabbitMQQueue(
            RABBITMQ_URL,
            storage_override or storage,
            settings,
            prefetch_count=prefetch_count,
            operation_timeout_seconds=5.0,
        )
        opened.append(queue)
        return queue

    yield open_queue
    for queue in opened:
        await queue.close()
    for queue in opened:
        await queue.purge_namespace()


async def make_run(
    storage: Storage, *, queue: str = "default", priority: int = 0, name: str | None = None
) -> Run:
    spec = JobSpec(type="noop", payload={}, queue=queue, priority=priority, name=name)
    return await create_due_run(storage, spec)


async def claim_all(
    queue: RabbitMQQueue,
    queues: Sequence[str] = ("default",),
    *,
    limit: int = 10,
    wait_seconds: float = 2.0,
) -> list[Run]:
    return await queue.claim(WORKER, list(queues), limit, LEASE_SECONDS, wait_seconds)


async def claim_until_held(
    queue: RabbitMQQueue,
    count: int,
    *,
    message: str,
    broker_name: str | None = None,
    timeout_seconds: float = 10.0,
    reconnecting: bool = False,
) -> list[Run]:
    """Claim in short waits until ``count`` runs are claimed; every run claimed.

    Deliveries reach the client in their own time, so one claim may see only some.
    With ``broker_name``, also until that broker queue holds no other message: none
    ready and only the claimed ``count`` unacknowledged (copies refused and acked).
    With ``reconnecting``, a claim failing with ``QueueError`` claims nothing, as while
    the queue restores a cut connection.
    """
    claimed: list[Run] = []

    async def held() -> bool:
        try:
            claimed.extend(await claim_all(queue, wait_seconds=0.2))
        except QueueError:
            if not reconnecting:
                raise
            return False
        if len(claimed) < count:
            return False
        return broker_name is None or await _none_ready_and_unacked(broker_name, count)

    await wait_until(held, timeout_seconds, message=message)
    return claimed


async def ready_messages(queue_name: str) -> int | None:
    """Ready messages in the broker queue ``queue_name``; None if it does not exist."""
    connection = await aio_pika.connect(RABBITMQ_URL, timeout=5)
    async with connection:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue_name, passive=True)
        except ChannelNotFoundEntity:
            return None
        return declared.declaration_result.message_count


async def rabbitmqctl(*arguments: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    output, errors = await process.communicate()
    assert process.returncode == 0, f"rabbitmqctl {' '.join(arguments)}: {errors.decode()}"
    return output.decode()


async def broker_queue(queue_name: str) -> dict[str, object]:
    """``rabbitmqctl``'s view of one queue: type, arguments, ready and unacked counts."""
    listing = json.loads(
        await rabbitmqctl(
            "list_queues",
            "-q",
            "--formatter",
            "json",
            "name",
            "type",
            "arguments",
            "messages_ready",
            "messages_unacknowledged",
        )
    )
    matches = [entry for entry in listing if entry["name"] == queue_name]
    assert matches, f"queue {queue_name} not on the broker"
    return cast(dict[str, object], matches[0])


async def ready_and_unacked(queue_name: str) -> tuple[object, object]:
    entry = await broker_queue(queue_name)
    return entry["messages_ready"], entry["messages_unacknowledged"]


def topology(settings: QueueSettings) -> Topology:
    return Topology(settings.namespace, "classic")


class FailingClaims:
    """The real storage, except that its next ``claim_runs`` raises ``StorageError``."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self.failures_left = 1

    async def claim_runs(
        self, run_ids: Sequence[uuid.UUID], worker_id: str, lease_seconds: float
    ) -> list[Run]:
        if self.failures_left:
            self.failures_left -= 1
            raise StorageError("the database is unavailable (test)")
        return await self._storage.claim_runs(run_ids, worker_id, lease_seconds)


# --- pure parts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "expected"),
    [
        (-100, 0),
        (-30, 0),
        (-10, 1),
        (-3, 2),
        (-1, 3),
        (0, 4),
        (1, 5),
        (3, 6),
        (10, 7),
        (50, 8),
        (100, 9),
    ],
)
def test_amqp_priority_buckets(priority: int, expected: int) -> None:
    assert amqp_priority(priority) == expected


def test_amqp_priority_is_monotonic_within_range() -> None:
    levels = [amqp_priority(priority) for priority in range(-1000, 1001)]
    assert levels == sorted(levels)
    assert min(levels) == 0
    assert max(levels) == MAX_AMQP_PRIORITY


@pytest.mark.parametrize(
    ("setting", "version", "expected"),
    [
        ("auto", (3, 10, 8), "classic"),
        ("auto", (3, 13), "classic"),
        ("auto", (4, 0, 1), "quorum"),
        ("auto", (0,), "classic"),
        ("classic", (4, 1), "classic"),
        ("quorum", (3, 10, 8), "quorum"),
    ],
)
def test_queue_type_choice(setting: str, version: tuple[int, ...], expected: str) -> None:
    assert choose_queue_type(setting, version) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3.10.8", (3, 10, 8)), (b"4.0.2", (4, 0, 2)), ("4.1.0-rc.1", (4, 1, 0)), (None, (0,))],
)
def test_server_version_parsing(text: object, expected: tuple[int, ...]) -> None:
    assert parse_server_version(text) == expected


def test_run_queues_cannot_collide_with_the_backends_own_queues() -> None:
    names = Topology("ns", "classic")
    assert names.run_queue("dead") != names.dead_queue
    assert names.run_queue("sentinel") != names.sentinel_queue
    assert len(names.run_queue("q" * 300).encode()) <= 255
    assert names.run_queue("q" * 300) != names.run_queue("q" * 299)


# --- publishing and claiming ---------------------------------------------------------------


async def test_publish_claim_ack(storage: SQLStorage, open_rabbitmq: OpenQueue) -> None:
    settings = isolated_queue_settings()
    queue = await open_rabbitmq(settings)
    run = await make_run(storage)

    await queue.publish([run])
    claimed = await claim_all(queue)

    assert [claimed_run.id for claimed_run in claimed] == [run.id]
    assert claimed[0].status is RunStatus.RUNNING
    assert claimed[0].lease_owner == WORKER
    broker_name = topology(settings).run_queue("default")
    assert await ready_and_unacked(broker_name) == (0, 1)
    await queue.ack(claimed)
    await wait_until(lambda: _none_ready_and_unacked(broker_name, 0), message="acked")


async def test_the_factory_builds_it_from_an_amqp_url(storage: SQLStorage) -> None:
    settings = isolated_queue_settings()
    async with open_queue("rabbitmq", storage, settings, prefetch_count=3) as queue:
        assert isinstance(queue, RabbitMQQueue)
        assert queue.commits_are_publishes is False
        run = await make_run(storage)
        await queue.publish([run])
        claimed = await queue.claim(WORKER, ["default"], 10, LEASE_SECONDS, 2.0)
        assert [claimed_run.id for claimed_run in claimed] == [run.id]
        await queue.ack(claimed)
    # Closed and purged by ``open_queue``.
    assert await ready_messages(topology(settings).run_queue("default")) is None


async def test_messages_are_persistent_run_ids(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    settings = isolated_queue_settings()
    queue = await open_rabbitmq(settings)
    run = await make_run(storage, priority=10)
    await queue.publish([run])

    connection = await aio_pika.connect(RABBITMQ_URL, timeout=5)
    async with connection:
        channel = await connection.channel()
        broker_queue_ = await channel.declare_queue(
            topology(settings).run_queue("default"), passive=True
        )
        message = await broker_queue_.get(timeout=5)
        assert message is not None
        await message.reject(requeue=True)
    assert message.body.decode() == str(run.id)
    assert message.message_id == str(run.id)
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.priority == amqp_priority(10)


async def test_publishing_to_a_deleted_queue_fails_then_declares_it_again(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    settings = isolated_queue_settings()
    broker_name = topology(settings).run_queue("default")
    queue = await open_rabbitmq(settings)
    await queue.publish([await make_run(storage)])
    await rabbitmqctl("delete_queue", broker_name)  # an operator's doing
    run = await make_run(storage)

    with pytest.raises(QueueError, match="NO_ROUTE"):
        await queue.publish([run])  # unroutable: not silently dropped
    await queue.publish([run])  # the outbox's next attempt

    assert await ready_messages(broker_name) == 1


async def test_broker_delivers_higher_priority_first(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    # One delivery in flight at a time: the order is the broker's, not the client's sort.
    queue = await open_rabbitmq(isolated_queue_settings(), prefetch_count=1)
    low = await make_run(storage, priority=-10)
    high = await make_run(storage, priority=50)
    normal = await make_run(storage, priority=0)
    await queue.publish([low, high, normal])

    order: list[uuid.UUID] = []
    for _ in range(3):
        (claimed,) = await claim_all(queue, limit=1)
        order.append(claimed.id)
        await queue.ack([claimed])

    assert order == [high.id, normal.id, low.id]


async def test_a_claimed_batch_comes_highest_priority_first(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    settings = isolated_queue_settings()
    queue = await open_rabbitmq(settings)
    runs = [await make_run(storage, priority=priority) for priority in (1, 2, 100, -5)]
    await queue.publish(runs)
    # Wait until all four are delivered to this process, so one claim sees them all.
    await queue.claim(WORKER, ["default"], 0, LEASE_SECONDS, 0)
    await wait_until(
        lambda: _none_ready_and_unacked(topology(settings).run_queue("default"), 4),
        message="all delivered",
    )

    claimed = await claim_all(queue, limit=10)

    assert [run.priority for run in claimed] == [100, 2, 1, -5]


async def _none_ready_and_unacked(broker_name: str, expected: int) -> bool:
    """No message waits in ``broker_name`` and ``expected`` are delivered but unacknowledged."""
    return (await ready_and_unacked(broker_name)) == (0, expected)


async def test_deliveries_of_a_consumer_that_goes_away_go_to_another(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    settings = isolated_queue_settings()
    broker_name = topology(settings).run_queue("default")
    first = await open_rabbitmq(settings)
    second = await open_rabbitmq(settings)
    runs = [await make_run(storage) for _ in range(3)]
    await first.publish(runs)
    (held_by_first,) = await claim_all(first, limit=1)
    # The other two are delivered to ``first`` too (prefetch), but not claimed.
    await wait_until(lambda: _none_ready_and_unacked(broker_name, 3), message="all three at first")

    await first.close()  # as if its worker died: nothing acked

    claimed = await claim_until_held(
        second, 2, broker_name=broker_name, message="second claims the unclaimed two"
    )
    assert {run.id for run in claimed} == {run.id for run in runs} - {held_by_first.id}
    # The redelivered copy of the run ``first`` claimed was refused and acked.
    assert (await storage.get_run(held_by_first.id)).lease_owner == WORKER
    assert len(claimed) == 2


async def test_acks_of_runs_ending_together_leave_the_others_unacknowledged(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    settings = isolated_queue_settings()
    broker_name = topology(settings).run_queue("default")
    queue = await open_rabbitmq(settings)
    runs = [await make_run(storage) for _ in range(5)]
    await queue.publish(runs)
    claimed = {
        run.id: run for run in await claim_until_held(queue, len(runs), message="all five claimed")
    }
    assert await ready_and_unacked(broker_name) == (0, 5)

    # The first two share one multiple ack; the fourth cannot take the third with it.
    await queue.ack([claimed[runs[index].id] for index in (0, 1, 3)])
    await wait_until(lambda: _none_ready_and_unacked(broker_name, 2), message="three acked")
    await asyncio.sleep(0.2)  # the broker has had time to settle anything else
    assert await ready_and_unacked(broker_name) == (0, 2)

    await queue.ack([claimed[runs[index].id] for index in (2, 4)])
    await wait_until(lambda: _none_ready_and_unacked(broker_name, 0), message="all acked")


async def test_a_duplicate_delivery_is_acked_and_ignored(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    settings = isolated_queue_settings()
    broker_name = topology(settings).run_queue("default")
    queue = await open_rabbitmq(settings)
    run = await make_run(storage)
    await queue.publish([run])
    await queue.publish([run])  # the outbox published it twice

    claimed = await claim_until_held(
        queue, 1, broker_name=broker_name, message="one delivery held, the copy acked"
    )
    assert [claimed_run.id for claimed_run in claimed] == [run.id]


async def test_a_delivery_of_a_run_running_elsewhere_is_acked(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    settings = isolated_queue_settings()
    broker_name = topology(settings).run_queue("default")
    queue = await open_rabbitmq(settings)
    run = await make_run(storage)
    assert await storage.claim_runs([run.id], "worker-elsewhere", LEASE_SECONDS)
    await queue.publish([run])

    assert await claim_all(queue, wait_seconds=1.0) == []

    await wait_until(lambda: _none_ready_and_unacked(broker_name, 0), message="the delivery acked")
    assert (await storage.get_run(run.id)).lease_owner == "worker-elsewhere"


async def test_dead_letter_moves_the_delivery_to_the_dead_queue(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    settings = isolated_queue_settings()
    names = topology(settings)
    queue = await open_rabbitmq(settings)
    run = await make_run(storage)
    await queue.publish([run])
    claimed = await claim_all(queue)

    await queue.dead_letter(claimed)

    await wait_until(lambda: _count_is(names.dead_queue, 1), message="dead-lettered")
    assert await ready_and_unacked(names.run_queue("default")) == (0, 0)
    connection = await aio_pika.connect(RABBITMQ_URL, timeout=5)
    async with connection:
        channel = await connection.channel()
        dead = await channel.declare_queue(names.dead_queue, passive=True)
        message = await dead.get(timeout=5)
        assert message is not None
        await message.reject(requeue=True)
    assert message.body.decode() == str(run.id)


async def _count_is(broker_name: str, expected: int) -> bool:
    return await ready_messages(broker_name) == expected


async def test_ack_and_dead_letter_of_unknown_runs_do_nothing(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    queue = await open_rabbitmq(isolated_queue_settings())
    run = await make_run(storage)

    await queue.ack([run])
    await queue.dead_letter([run])


async def test_a_delivery_that_is_no_run_id_is_dead_lettered(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    settings = isolated_queue_settings()
    names = topology(settings)
    queue = await open_rabbitmq(settings)
    await queue.publish([await make_run(storage, queue="default")])
    claimed = await claim_all(queue)
    await queue.ack(claimed)

    connection = await aio_pika.connect(RABBITMQ_URL, timeout=5)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(names.run_exchange)
        await exchange.publish(aio_pika.Message(b"not a run id"), routing_key="default")

    assert await claim_all(queue, wait_seconds=1.0) == []
    await wait_until(lambda: _count_is(names.dead_queue, 1), message="dead-lettered")


async def test_a_failed_database_claim_keeps_the_deliveries_for_the_next_claim(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    failing = FailingClaims(storage)
    queue = await open_rabbitmq(isolated_queue_settings(), storage_override=cast(Storage, failing))
    run = await make_run(storage)
    await queue.publish([run])

    with pytest.raises(StorageError):
        await claim_all(queue)
    claimed = await claim_all(queue, wait_seconds=0)

    assert [claimed_run.id for claimed_run in claimed] == [run.id]


async def test_depth_counts_ready_runs_per_queue(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    queue = await open_rabbitmq(isolated_queue_settings(), prefetch_count=1)
    default_runs = [await make_run(storage) for _ in range(3)]
    report_run = await make_run(storage, queue="reports")
    await queue.publish([*default_runs, report_run])

    assert await queue.depth() == {"default": 3, "reports": 1}

    await claim_all(queue, limit=1)  # one delivered and held: no longer waiting
    assert await queue.depth() == {"default": 2, "reports": 1}


async def test_lost_messages_are_detected_by_the_sentinel(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    settings = isolated_queue_settings()
    queue = await open_rabbitmq(settings)

    assert await queue.lost_messages_since_last_check() is True  # a new namespace
    assert await queue.lost_messages_since_last_check() is False
    assert await queue.lost_messages_since_last_check() is False

    await rabbitmqctl("delete_queue", topology(settings).sentinel_queue)  # state wiped

    assert await queue.lost_messages_since_last_check() is True
    assert await queue.lost_messages_since_last_check() is False


async def test_purge_namespace_deletes_every_queue_and_exchange(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    settings = isolated_queue_settings()
    names = topology(settings)
    queue = await open_rabbitmq(settings)
    await queue.publish([await make_run(storage)])
    await claim_all(queue, ["default", "other"], wait_seconds=0)
    await queue.lost_messages_since_last_check()
    await queue.close()

    await queue.purge_namespace()

    for broker_name in (
        names.run_queue("default"),
        names.run_queue("other"),
        names.dead_queue,
        names.sentinel_queue,
    ):
        assert await ready_messages(broker_name) is None, broker_name
    connection = await aio_pika.connect(RABBITMQ_URL, timeout=5)
    async with connection:
        for exchange in (names.run_exchange, names.dead_exchange):
            channel = await connection.channel()
            with pytest.raises(ChannelNotFoundEntity):
                await channel.get_exchange(exchange)


# --- queue types ---------------------------------------------------------------------


async def test_auto_on_rabbitmq_3_declares_classic_priority_queues(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    settings = isolated_queue_settings(rabbitmq_queue_type="auto")
    queue = await open_rabbitmq(settings)
    await queue.publish([await make_run(storage)])

    entry = await broker_queue(topology(settings).run_queue("default"))

    assert entry["type"] == "classic"
    # rabbitmqctl lists arguments as [name, AMQP type, value] triples.
    arguments = {name: value for name, _, value in cast(list[list[object]], entry["arguments"])}
    assert arguments["x-max-priority"] == MAX_AMQP_PRIORITY
    assert arguments["x-dead-letter-exchange"] == topology(settings).dead_exchange


async def test_quorum_queues_carry_runs_and_dead_letters(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    settings = isolated_queue_settings(rabbitmq_queue_type="quorum")
    names = topology(settings)
    queue = await open_rabbitmq(settings)
    succeeded, dead = await make_run(storage), await make_run(storage)
    await queue.publish([succeeded, dead])

    claimed = await claim_until_held(queue, 2, message="both claimed from a quorum queue")
    by_id = {run.id: run for run in claimed}
    await queue.ack([by_id[succeeded.id]])
    await queue.dead_letter([by_id[dead.id]])

    assert (await broker_queue(names.run_queue("default")))["type"] == "quorum"
    assert (await broker_queue(names.dead_queue))["type"] == "quorum"
    await wait_until(lambda: _count_is(names.dead_queue, 1), message="dead-lettered")
    await wait_until(
        lambda: _none_ready_and_unacked(names.run_queue("default"), 0), message="settled"
    )


async def test_a_queue_declared_with_another_type_is_a_clear_error(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    classic = isolated_queue_settings(rabbitmq_queue_type="classic")
    await (await open_rabbitmq(classic)).publish([await make_run(storage)])
    quorum = await open_rabbitmq(classic.model_copy(update={"rabbitmq_queue_type": "quorum"}))

    with pytest.raises(QueueError, match=r"PRECONDITION_FAILED.*rabbitmq_queue_type"):
        await quorum.publish([await make_run(storage)])


# --- outages -------------------------------------------------------------------------


async def test_an_unreachable_broker_fails_each_call_promptly(storage: SQLStorage) -> None:
    queue = RabbitMQQueue(
        UNREACHABLE_URL, storage, isolated_queue_settings(), operation_timeout_seconds=5.0
    )
    run = await make_run(storage)
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: queue.publish([run]),
        lambda: queue.claim(WORKER, ["default"], 10, LEASE_SECONDS, 1.0),
        queue.depth,
        queue.lost_messages_since_last_check,
    ]
    try:
        for call in calls:
            started = time.monotonic()
            with pytest.raises(QueueError, match="RabbitMQ could not connect"):
                await call()
            assert time.monotonic() - started < 3.0
    finally:
        await queue.close()
        await queue.purge_namespace()  # declared nothing: must not even connect


async def test_a_closed_queue_refuses_calls(storage: SQLStorage, open_rabbitmq: OpenQueue) -> None:
    queue = await open_rabbitmq(isolated_queue_settings())
    await queue.publish([await make_run(storage)])
    await queue.close()

    with pytest.raises(QueueError, match="closed"):
        await claim_all(queue)


async def close_connections_named(connection_name: str) -> int:
    """Have the broker cut the connections a client named ``connection_name``; how many."""
    # The tab-separated listing shows pids as close_connection takes them (JSON does not).
    listing = await rabbitmqctl(
        "list_connections", "-q", "--no-table-headers", "pid", "client_properties"
    )
    wanted = f'{{"connection_name","{connection_name}"}}'
    pids = [line.split("\t", 1)[0] for line in listing.splitlines() if wanted in line]
    for pid in pids:
        await rabbitmqctl("close_connection", pid, "jobsched test: connection cut")
    return len(pids)


async def test_a_cut_connection_is_restored_and_its_deliveries_come_again(
    storage: SQLStorage, open_rabbitmq: OpenQueue
) -> None:
    settings = isolated_queue_settings(reconnect_backoff_max_seconds=0.2)
    broker_name = topology(settings).run_queue("default")
    queue = await open_rabbitmq(settings)
    runs = [await make_run(storage) for _ in range(3)]
    await queue.publish(runs)
    (first,) = await claim_all(queue, limit=1)
    await wait_until(lambda: _none_ready_and_unacked(broker_name, 3), message="two more buffered")

    assert await close_connections_named(f"jobsched {settings.namespace}") == 1

    # The two buffered deliveries died with the channel: they are dropped, and their
    # redelivered copies claimed; the copy of ``first`` is refused and acked.
    claimed = await claim_until_held(
        queue,
        2,
        broker_name=broker_name,
        timeout_seconds=20.0,
        reconnecting=True,
        message="claimed again after reconnect",
    )
    assert {run.id for run in claimed} == {run.id for run in runs} - {first.id}
    await queue.ack([first])  # its delivery died with the old channel: a no-op
    await queue.ack(claimed)
    await wait_until(
        lambda: _none_ready_and_unacked(broker_name, 0), message="acked on the new channel"
    )


async def _rabbitmq_is_up() -> bool:
    try:
        connection = await aio_pika.connect(RABBITMQ_URL, timeout=2)
    except (OSError, aio_pika.exceptions.AMQPError):
        return False
    await connection.close()
    return True


async def _start_rabbitmq() -> None:
    await rabbitmqctl("start_app")
    await rabbitmqctl("await_startup")
    await wait_until(_rabbitmq_is_up, 30.0, interval_seconds=0.2, message="RabbitMQ answers")


@pytest.fixture
async def rabbitmq_app() -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Yields a function stopping the RabbitMQ app; it is always running again after the test."""

    async def stop() -> None:
        await rabbitmqctl("stop_app")

    try:
        yield stop
    finally:
        if not await _rabbitmq_is_up():
            await _start_rabbitmq()


@pytest.mark.serial
async def test_runs_and_consumers_survive_a_rabbitmq_restart(
    storage: SQLStorage,
    open_rabbitmq: OpenQueue,
    rabbitmq_app: Callable[[], Awaitable[None]],
) -> None:
    settings = isolated_queue_settings(reconnect_backoff_max_seconds=0.2)
    names = topology(settings)
    queue = await open_rabbitmq(settings)
    assert await queue.lost_messages_since_last_check() is True  # a new namespace
    held_run = await make_run(storage)
    await queue.publish([held_run])
    held = await claim_all(queue)  # the "default" consumer runs from here on
    assert [run.id for run in held] == [held_run.id]
    waiting_run = await make_run(storage, queue="archive")
    await queue.publish([waiting_run])  # nobody consumes "archive" yet

    await rabbitmq_app()
    with pytest.raises(QueueError):
        await queue.publish([await make_run(storage)])
    await _start_rabbitmq()

    await queue.ack(held)  # its delivery died with the old channel: a no-op
    fresh_run = await make_run(storage)
    await wait_until(lambda: _published(queue, fresh_run), message="publish after restart")
    # The consumer started before the restart delivers again with no new setup; the
    # redelivered copy of ``held_run`` is refused (it is running) and acked.
    claimed = await claim_until_held(
        queue,
        1,
        broker_name=names.run_queue("default"),
        timeout_seconds=20.0,
        message="consumer resumes, copy acked",
    )
    assert [run.id for run in claimed] == [fresh_run.id]
    assert [run.id for run in await claim_all(queue, ["archive"])] == [waiting_run.id]
    assert await queue.lost_messages_since_last_check() is False


async def _published(queue: RabbitMQQueue, run: Run) -> bool:
    try:
        await queue.publish([run])
    except QueueError:
        return False
    return True
