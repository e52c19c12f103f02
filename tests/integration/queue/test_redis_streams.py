"""The Redis Streams queue against the real Redis and real databases.

Every test owns a fresh namespace (key prefix) and purges it afterwards, since the
Redis server is shared. Broker state is inspected with plain Redis commands, so the
tests check what is really in the streams, not what the queue believes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from jobsched.core.errors import QueueError, StorageError
from jobsched.core.models import JobSpec, Run, RunStatus
from jobsched.queue import create_queue
from jobsched.queue.redis_keys import RedisKeys, priority_level
from jobsched.queue.redis_streams import (
    BrokerIdentity,
    Delivery,
    RedisStreamsQueue,
    messages_lost,
)
from jobsched.storage.base import Storage
from jobsched.storage.database import SQLStorage
from jobsched.storage.migrate import upgrade_to_head
from jobsched.storage.urls import parse_database_url
from tests.e2e.broker_services import RedisService
from tests.helpers import create_due_run, wait_until
from tests.queue_backends import REDIS_URL, isolated_queue_settings

LEASE_SECONDS = 30.0

OpenQueue = Callable[..., Awaitable[RedisStreamsQueue]]


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    """A plain client for looking at what the queue left in Redis.

    redis-py types stream replies as the union of their RESP2 and RESP3 shapes; the
    tests read them as this client's RESP2 replies, held in variables typed ``Any``.
    """
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def sqlite_storage(tmp_path: Path) -> AsyncIterator[SQLStorage]:
    """For tests about Redis alone, where running them on PostgreSQL too adds nothing."""
    url = f"sqlite:///{tmp_path / 'jobsched.db'}"
    upgrade_to_head(parse_database_url(url))
    store = SQLStorage.from_url(url)
    yield store
    await store.close()


@pytest.fixture
async def open_redis_queue() -> AsyncIterator[OpenQueue]:
    """Opens queues on fresh namespaces (or a given one); closes and purges them after."""
    opened: list[RedisStreamsQueue] = []

    async def open_queue(
        storage: Storage, namespace: str | None = None, **options: Any
    ) -> RedisStreamsQueue:
        overrides = {key: options.pop(key) for key in list(options) if key.startswith("redis_")}
        if namespace is not None:
            overrides["namespace"] = namespace
        url = options.pop("url", REDIS_URL)
        settings = isolated_queue_settings(url=url, **overrides)
        queue = RedisStreamsQueue(url, storage, settings, **options)
        opened.append(queue)
        return queue

    yield open_queue
    for queue in opened:
        await queue.close()
        await queue.purge_namespace()


def keys_of(queue: RedisStreamsQueue) -> RedisKeys:
    return RedisKeys(queue._settings.namespace)


def stream_of(queue: RedisStreamsQueue, run: Run) -> str:
    return keys_of(queue).stream(run.queue, priority_level(run.priority))


async def pending_count(redis_client: Redis, queue: RedisStreamsQueue, run: Run) -> int:
    summary = await redis_client.xpending(stream_of(queue, run), keys_of(queue).group)
    return int(summary["pending"])


async def undelivered_count(redis_client: Redis, queue: RedisStreamsQueue, stream: str) -> int:
    (group,) = [
        group
        for group in await redis_client.xinfo_groups(stream)
        if group["name"] == keys_of(queue).group
    ]
    return int(group["lag"])


async def drain_and_acknowledge(
    queue: RedisStreamsQueue, redis_client: Redis, stream: str
) -> list[uuid.UUID]:
    """Claim until nothing is left undelivered, acknowledging every run; their ids.

    Publishing one run many times makes many entries cheaply: the first delivery
    claims it, every other one is a duplicate the claim acknowledges at once.
    """
    claimed = await claim(queue, "worker-drain", limit=500)  # creates the group too
    while await undelivered_count(redis_client, queue, stream):
        claimed += await claim(queue, "worker-drain", limit=500)
    await queue.ack(claimed)
    return [run.id for run in claimed]


async def wait_until_claim_blocks(redis_client: Redis, queue: RedisStreamsQueue) -> None:
    """Until the queue's connection is blocked in XREADGROUP (its name carries the namespace)."""
    client_name = f"jobsched:{queue._settings.namespace}"

    async def claimer_blocked() -> bool:
        clients = await redis_client.client_list()
        return any(c["name"] == client_name and "b" in c["flags"] for c in clients)

    await wait_until(claimer_blocked, message="the claim blocks in XREADGROUP")


async def make_run(storage: Storage, *, priority: int = 0, queue: str = "default") -> Run:
    spec = JobSpec(type="noop", payload={}, priority=priority, queue=queue)
    return await create_due_run(storage, spec)


async def claim(
    queue: RedisStreamsQueue,
    worker_id: str,
    *,
    limit: int = 10,
    queues: Sequence[str] = ("default",),
    wait_seconds: float = 0.0,
) -> list[Run]:
    return await queue.claim(worker_id, queues, limit, LEASE_SECONDS, wait_seconds)


async def claimed_by_worker_a(queue: RedisStreamsQueue, storage: Storage) -> tuple[Run, Run]:
    """A new run, published on ``queue`` and claimed by worker A: the run, and its claim."""
    run = await make_run(storage)
    await queue.publish([run])
    (claimed,) = await claim(queue, "worker-a")
    return run, claimed


# --- delivery ------------------------------------------------------------------------


async def test_a_published_run_is_claimed_then_acknowledged(
    storage: Storage, open_redis_queue: OpenQueue, redis_client: Redis
) -> None:
    queue = await open_redis_queue(storage)
    run = await make_run(storage)

    await queue.publish([run])
    (claimed,) = await claim(queue, "worker-a")

    assert claimed.id == run.id
    assert claimed.status is RunStatus.RUNNING
    assert claimed.lease_owner == "worker-a"
    assert claimed.attempt == 1
    assert await pending_count(redis_client, queue, run) == 1

    await queue.ack([claimed])

    assert await pending_count(redis_client, queue, run) == 0
    assert await claim(queue, "worker-a") == []


async def test_the_factory_selects_redis_streams_for_a_redis_url(
    sqlite_storage: Storage,
) -> None:
    queue = create_queue(isolated_queue_settings(url=REDIS_URL), sqlite_storage)
    try:
        assert isinstance(queue, RedisStreamsQueue)
        assert queue.commits_are_publishes is False
    finally:
        await queue.close()


async def test_higher_priority_runs_are_claimed_first_across_levels_and_queues(
    storage: Storage, open_redis_queue: OpenQueue
) -> None:
    queue = await open_redis_queue(storage)
    low = await make_run(storage, priority=-5)
    normal = await make_run(storage, priority=0, queue="other")
    high = await make_run(storage, priority=3, queue="other")
    high_default = await make_run(storage, priority=1)
    await queue.publish([low, normal, high, high_default])

    one_at_a_time = [
        await claim(queue, "worker-a", limit=1, queues=("default", "other")) for _ in range(4)
    ]

    assert [[run.id for run in runs] for runs in one_at_a_time] == [
        [high_default.id],
        [high.id],
        [normal.id],
        [low.id],
    ]


async def test_one_claim_returns_its_runs_highest_priority_first(
    storage: Storage, open_redis_queue: OpenQueue
) -> None:
    queue = await open_redis_queue(storage)
    runs = [await make_run(storage, priority=priority) for priority in (-1, 0, 2, 0)]
    await queue.publish(runs)

    claimed = await claim(queue, "worker-a", limit=3)

    assert [run.priority for run in claimed] == [2, 0, 0]
    assert [run.id for run in claimed] == [runs[2].id, runs[1].id, runs[3].id]
    assert [run.id for run in await claim(queue, "worker-a")] == [runs[0].id]


# RESP3 shapes XREADGROUP's reply differently; a URL may ask for it.
@pytest.mark.parametrize("url", [REDIS_URL, f"{REDIS_URL}?protocol=3"], ids=["resp2", "resp3"])
async def test_a_waiting_claim_returns_as_soon_as_a_run_is_published(
    sqlite_storage: Storage, open_redis_queue: OpenQueue, redis_client: Redis, url: str
) -> None:
    queue = await open_redis_queue(sqlite_storage, url=url)
    run = await make_run(sqlite_storage)
    waiting = asyncio.create_task(claim(queue, "worker-a", wait_seconds=4.0))
    await wait_until_claim_blocks(redis_client, queue)
    await queue.publish([run])

    async with asyncio.timeout(2.0):
        claimed = await waiting
    assert [c.id for c in claimed] == [run.id]


async def test_a_cancelled_waiting_claim_takes_nothing_with_it(
    sqlite_storage: Storage, open_redis_queue: OpenQueue, redis_client: Redis
) -> None:
    queue = await open_redis_queue(sqlite_storage)  # reclaim idle time: the default 60 s
    run = await make_run(sqlite_storage)
    waiting = asyncio.create_task(claim(queue, "worker-a", wait_seconds=4.0))
    await wait_until_claim_blocks(redis_client, queue)
    waiting.cancel()  # a worker shutting down
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await queue.publish([run])

    assert [c.id for c in await claim(queue, "worker-a", wait_seconds=1.0)] == [run.id]


async def test_a_claim_with_nothing_to_take_returns_empty_after_its_wait(
    sqlite_storage: Storage, open_redis_queue: OpenQueue
) -> None:
    queue = await open_redis_queue(sqlite_storage)
    loop = asyncio.get_running_loop()

    started = loop.time()
    assert await claim(queue, "worker-a", wait_seconds=0.0) == []
    assert await claim(queue, "worker-a", wait_seconds=0.0004) == []  # not BLOCK 0 (forever)
    assert loop.time() - started < 1.0

    started = loop.time()
    assert await claim(queue, "worker-a", wait_seconds=0.3) == []
    assert 0.25 <= loop.time() - started < 2.0


# --- duplicates and orphans ------------------------------------------------------------


async def test_a_run_published_twice_is_claimed_once_and_the_duplicate_acknowledged(
    storage: Storage, open_redis_queue: OpenQueue, redis_client: Redis
) -> None:
    queue = await open_redis_queue(storage)
    run = await make_run(storage)
    await queue.publish([run, run])
    await queue.publish([run])

    claimed = await claim(queue, "worker-a", limit=10)

    assert [c.id for c in claimed] == [run.id]
    assert await pending_count(redis_client, queue, run) == 1  # only the claimed delivery
    await queue.ack(claimed)
    assert await pending_count(redis_client, queue, run) == 0


async def test_a_duplicate_delivered_while_the_run_is_running_is_acknowledged(
    storage: Storage, open_redis_queue: OpenQueue, redis_client: Redis
) -> None:
    queue = await open_redis_queue(storage)
    run, claimed = await claimed_by_worker_a(queue, storage)

    await queue.publish([run])

    assert await claim(queue, "worker-b") == []
    assert await pending_count(redis_client, queue, run) == 1
    assert (await storage.get_run(run.id)).lease_owner == "worker-a"
    await queue.ack([claimed])
    assert await pending_count(redis_client, queue, run) == 0


async def test_an_entry_read_by_a_dead_consumer_is_reclaimed_and_its_run_claimed(
    storage: Storage, open_redis_queue: OpenQueue, redis_client: Redis
) -> None:
    queue = await open_redis_queue(storage, redis_reclaim_idle_seconds=0.2)
    run = await make_run(storage)
    assert await claim(queue, "worker-b") == []  # creates the streams and the group
    await queue.publish([run])
    # Worker A read the entry, then died before claiming the run in the database.
    read: Any = await redis_client.xreadgroup(
        keys_of(queue).group, "worker-a", {stream_of(queue, run): ">"}, count=10
    )
    assert len(read[0][1]) == 1

    claimed = await wait_until(
        lambda: claim(queue, "worker-b"), message="worker B reclaims the idle entry"
    )

    assert [c.id for c in claimed] == [run.id]
    assert claimed[0].lease_owner == "worker-b"
    (holder,) = await redis_client.xpending_range(
        stream_of(queue, run), keys_of(queue).group, "-", "+", 10
    )
    assert holder["consumer"] == "worker-b"
    await queue.ack(claimed)
    assert await pending_count(redis_client, queue, run) == 0


async def test_an_entry_of_a_dead_worker_whose_run_is_running_is_acknowledged(
    storage: Storage, open_redis_queue: OpenQueue, redis_client: Redis
) -> None:
    settings = {"redis_reclaim_idle_seconds": 0.2}
    worker_a_queue = await open_redis_queue(storage, **settings)
    namespace = worker_a_queue._settings.namespace
    worker_b_queue = await open_redis_queue(storage, namespace, **settings)
    run, claimed = await claimed_by_worker_a(worker_a_queue, storage)
    # Worker A dies now: it never acknowledges. Its run stays running under its lease,
    # for the database's lease expiry (not Redis) to rescue.

    async def entry_acknowledged() -> bool:
        assert await claim(worker_b_queue, "worker-b") == []
        return await pending_count(redis_client, worker_b_queue, run) == 0

    await wait_until(entry_acknowledged, message="worker B reclaims and drops the entry")

    current = await storage.get_run(run.id)
    assert current.status is RunStatus.RUNNING
    assert current.lease_owner == "worker-a"
    assert current.attempt == claimed.attempt


async def test_runs_left_unclaimed_by_a_database_outage_are_claimed_on_the_next_call(
    sqlite_storage: Storage, open_redis_queue: OpenQueue
) -> None:
    failing = FailingClaimsStorage(sqlite_storage)
    queue = await open_redis_queue(failing)  # reclaim idle time: the default 60 s
    run = await make_run(sqlite_storage)
    await queue.publish([run])

    failing.failures_left = 1
    with pytest.raises(StorageError):
        await claim(queue, "worker-a")

    assert [c.id for c in await claim(queue, "worker-a")] == [run.id]


async def test_entries_read_beyond_the_limit_are_handed_back_at_once(
    sqlite_storage: Storage, open_redis_queue: OpenQueue, redis_client: Redis
) -> None:
    # A blocking read over several streams can return more than `limit` entries
    # (Redis 7.2 and later serve every ready stream at once); that read is what
    # the raw XREADGROUP stands in for.
    queue = await open_redis_queue(sqlite_storage)  # reclaim idle time: the default 60 s
    first, second = await make_run(sqlite_storage), await make_run(sqlite_storage)
    assert await claim(queue, "worker-a") == []
    await queue.publish([first, second])
    stream = stream_of(queue, first)
    read: Any = await redis_client.xreadgroup(
        keys_of(queue).group, "worker-a", {stream: ">"}, count=10
    )
    ((_, entries),) = read
    deliveries = [Delivery(stream, entry_id, uuid.UUID(f["run_id"])) for entry_id, f in entries]

    claimed = await queue._claim_delivered(deliveries, "worker-a", 1, LEASE_SECONDS)

    assert [c.id for c in claimed] == [first.id]
    assert [c.id for c in await claim(queue, "worker-b", limit=1)] == [second.id]


# --- acknowledging ----------------------------------------------------------------------


async def test_a_dead_run_is_recorded_on_the_dead_letter_stream_and_acknowledged(
    storage: Storage, open_redis_queue: OpenQueue, redis_client: Redis
) -> None:
    queue = await open_redis_queue(storage)
    run, claimed = await claimed_by_worker_a(queue, storage)

    await queue.dead_letter([claimed])

    assert await pending_count(redis_client, queue, run) == 0
    dead_letters: Any = await redis_client.xrange(keys_of(queue).dead_letters)
    ((_, fields),) = dead_letters
    assert fields["run_id"] == str(run.id)
    assert fields["stream"] == stream_of(queue, run)


async def test_acks_and_dead_letters_of_runs_not_delivered_here_change_nothing(
    sqlite_storage: Storage, open_redis_queue: OpenQueue, redis_client: Redis
) -> None:
    queue = await open_redis_queue(sqlite_storage)
    other = await open_redis_queue(sqlite_storage, queue._settings.namespace)
    run, claimed = await claimed_by_worker_a(queue, sqlite_storage)

    await other.ack([claimed])
    await other.dead_letter([claimed])

    assert await pending_count(redis_client, queue, run) == 1
    assert await redis_client.exists(keys_of(queue).dead_letters) == 0


# --- depth ------------------------------------------------------------------------------


async def test_depth_counts_runs_not_yet_delivered_per_queue(
    storage: Storage, open_redis_queue: OpenQueue
) -> None:
    queue = await open_redis_queue(storage)
    assert await queue.depth() == {}
    runs = [
        await make_run(storage, priority=1),
        await make_run(storage, priority=0),
        await make_run(storage, priority=-1),
        await make_run(storage, queue="other"),
    ]
    await queue.publish(runs)

    assert await queue.depth() == {"default": 3, "other": 1}  # before any worker read
    claimed = await claim(queue, "worker-a", limit=2)
    assert await queue.depth() == {"default": 1, "other": 1}
    await queue.ack(claimed)
    assert await queue.depth() == {"default": 1, "other": 1}
    await claim(queue, "worker-a", queues=("default", "other"))
    assert await queue.depth() == {"default": 0, "other": 0}


# --- trimming and housekeeping -------------------------------------------------------------


async def test_trimming_drops_acknowledged_entries_only(
    storage: Storage, open_redis_queue: OpenQueue, redis_client: Redis
) -> None:
    queue = await open_redis_queue(
        storage, redis_stream_max_length=1000, clock=lambda: 0.0
    )  # a frozen clock: only the explicit maintain_streams() calls trim
    held, duplicated, undelivered = [await make_run(storage) for _ in range(3)]
    stream = stream_of(queue, held)
    await queue.publish([held])
    (held_claim,) = await claim(queue, "worker-a", limit=1)  # pending, oldest entry
    await queue.publish([duplicated] * 1500)
    assert await drain_and_acknowledge(queue, redis_client, stream) == [duplicated.id]
    await queue.publish([undelivered] * 50)
    newest: Any = await redis_client.xrevrange(stream, count=50)
    undelivered_ids = [entry_id for entry_id, _ in newest]

    assert await queue.maintain_streams() == (0, 0)  # the held entry is the oldest
    assert await redis_client.xlen(stream) == 1551

    await queue.ack([held_claim])
    trimmed, _ = await queue.maintain_streams()

    length = await redis_client.xlen(stream)
    assert trimmed == 1551 - length
    assert 50 <= length <= 300
    kept: Any = await redis_client.xrange(stream)
    kept_ids = {entry_id for entry_id, _ in kept}
    assert set(undelivered_ids) <= kept_ids
    assert await undelivered_count(redis_client, queue, stream) == 50
    assert [r.id for r in await claim(queue, "worker-b")] == [undelivered.id]


async def test_streams_under_their_maximum_length_are_not_trimmed(
    sqlite_storage: Storage, open_redis_queue: OpenQueue, redis_client: Redis
) -> None:
    queue = await open_redis_queue(sqlite_storage, redis_stream_max_length=1000)
    run = await make_run(sqlite_storage)
    await queue.publish([run] * 900)
    await drain_and_acknowledge(queue, redis_client, stream_of(queue, run))

    assert (await queue.maintain_streams())[0] == 0
    assert await redis_client.xlen(stream_of(queue, run)) == 900


async def test_publish_trims_on_its_own_every_few_seconds(
    sqlite_storage: Storage, open_redis_queue: OpenQueue, redis_client: Redis
) -> None:
    now = [0.0]
    queue = await open_redis_queue(
        sqlite_storage,
        redis_stream_max_length=1000,
        clock=lambda: now[0],
        maintenance_interval_seconds=5.0,
    )
    run = await make_run(sqlite_storage)
    await queue.publish([run] * 1500)
    await drain_and_acknowledge(queue, redis_client, stream_of(queue, run))
    await queue.publish([run])  # maintenance ran at the first publish: not due yet
    assert await redis_client.xlen(stream_of(queue, run)) == 1501

    now[0] = 5.0
    await queue.publish([run])

    assert await redis_client.xlen(stream_of(queue, run)) < 1000


async def test_consumers_holding_nothing_are_deleted_when_idle_long_enough(
    sqlite_storage: Storage, open_redis_queue: OpenQueue, redis_client: Redis
) -> None:
    queue = await open_redis_queue(sqlite_storage, idle_consumer_seconds=0.0)
    finished, running = await make_run(sqlite_storage), await make_run(sqlite_storage)
    await queue.publish([finished])
    await queue.ack(await claim(queue, "worker-gone"))
    await queue.publish([running])
    assert [r.id for r in await claim(queue, "worker-busy")] == [running.id]

    assert await queue.maintain_streams() == (0, 1)

    consumers = await redis_client.xinfo_consumers(stream_of(queue, running), keys_of(queue).group)
    assert [consumer["name"] for consumer in consumers] == ["worker-busy"]


# --- broker state loss --------------------------------------------------------------------


async def test_lost_messages_are_reported_once_after_the_namespace_is_flushed(
    sqlite_storage: Storage, open_redis_queue: OpenQueue
) -> None:
    scheduler_a = await open_redis_queue(sqlite_storage)
    namespace = scheduler_a._settings.namespace

    assert await scheduler_a.lost_messages_since_last_check() is True  # brand-new namespace
    assert await scheduler_a.lost_messages_since_last_check() is False
    scheduler_b = await open_redis_queue(sqlite_storage, namespace)
    assert await scheduler_b.lost_messages_since_last_check() is False  # a later replica

    await scheduler_a.purge_namespace()  # what Redis restarting without persistence does

    assert await scheduler_a.lost_messages_since_last_check() is True
    assert await scheduler_b.lost_messages_since_last_check() is True
    assert await scheduler_a.lost_messages_since_last_check() is False
    assert await scheduler_b.lost_messages_since_last_check() is False


@pytest.mark.parametrize(
    ("seen", "current", "marker_created", "lost"),
    [
        (None, BrokerIdentity("t1", "r1"), True, True),
        (None, BrokerIdentity("t1", "r1"), False, False),
        (BrokerIdentity("t1", "r1"), BrokerIdentity("t1", "r1"), False, False),
        (BrokerIdentity("t1", "r1"), BrokerIdentity("t2", "r1"), True, True),
        (BrokerIdentity("t1", "r1"), BrokerIdentity("t2", "r1"), False, True),
        (BrokerIdentity("t1", "r1"), BrokerIdentity("t1", "r2"), False, True),
        (BrokerIdentity("t1", None), BrokerIdentity("t1", "r2"), False, False),
        (BrokerIdentity("t1", "r1"), BrokerIdentity("t1", None), False, False),
    ],
)
def test_loss_is_a_new_marker_or_a_restarted_server(
    seen: BrokerIdentity | None, current: BrokerIdentity, marker_created: bool, lost: bool
) -> None:
    assert messages_lost(seen, current, marker_created=marker_created) is lost


async def test_claims_and_acks_carry_on_after_redis_lost_its_streams(
    sqlite_storage: Storage, open_redis_queue: OpenQueue, redis_client: Redis
) -> None:
    queue = await open_redis_queue(sqlite_storage)
    _, claimed = await claimed_by_worker_a(queue, sqlite_storage)
    after = await make_run(sqlite_storage)

    await queue.purge_namespace()  # streams and the group are gone
    await queue.publish([after])  # the stream comes back, without its group

    await queue.ack([claimed])  # NOGROUP: that delivery went with the data
    assert [r.id for r in await claim(queue, "worker-a")] == [after.id]
    assert await pending_count(redis_client, queue, after) == 1


async def test_a_claim_waiting_while_redis_loses_its_streams_returns_empty(
    sqlite_storage: Storage, open_redis_queue: OpenQueue, redis_client: Redis
) -> None:
    queue = await open_redis_queue(sqlite_storage)
    run = await make_run(sqlite_storage)
    waiting = asyncio.create_task(claim(queue, "worker-a", wait_seconds=4.0))
    await wait_until_claim_blocks(redis_client, queue)

    await queue.purge_namespace()  # Redis answers the blocked read with UNBLOCKED

    async with asyncio.timeout(2.0):
        assert await waiting == []
    await queue.publish([run])
    assert [r.id for r in await claim(queue, "worker-a")] == [run.id]


async def test_purging_a_namespace_leaves_one_that_merely_starts_alike(
    sqlite_storage: Storage, open_redis_queue: OpenQueue, redis_client: Redis
) -> None:
    queue = await open_redis_queue(sqlite_storage)
    namespace = queue._settings.namespace
    neighbour = await open_redis_queue(sqlite_storage, namespace + "x")
    run = await make_run(sqlite_storage)
    await queue.publish([run])
    await neighbour.publish([run])

    await queue.purge_namespace()

    assert await redis_client.exists(stream_of(queue, run)) == 0
    assert await redis_client.exists(stream_of(neighbour, run)) == 1


# --- outages ------------------------------------------------------------------------------


@pytest.mark.serial
async def test_a_redis_restart_is_reported_and_survived(
    sqlite_storage: Storage, open_redis_queue: OpenQueue
) -> None:
    redis_service = RedisService()
    queue = await open_redis_queue(sqlite_storage)
    before, after = await make_run(sqlite_storage), await make_run(sqlite_storage)
    assert await queue.lost_messages_since_last_check() is True  # brand-new namespace
    assert await queue.lost_messages_since_last_check() is False
    await queue.publish([before])
    (claimed,) = await claim(queue, "worker-a")

    try:
        # Shut down without saving: every stream, group and the epoch marker are gone.
        await asyncio.to_thread(redis_service.restart, 0.2)
    finally:
        await asyncio.to_thread(redis_service.ensure_running)

    # The pooled connections died with the server: each call reconnects by itself.
    assert await queue.lost_messages_since_last_check() is True
    assert await queue.lost_messages_since_last_check() is False
    await queue.ack([claimed])
    await queue.publish([after])
    assert [r.id for r in await claim(queue, "worker-a", wait_seconds=1.0)] == [after.id]


async def test_an_unreachable_redis_raises_queue_error_promptly(
    sqlite_storage: Storage,
) -> None:
    settings = isolated_queue_settings(url="redis://127.0.0.1:1/0")
    queue = RedisStreamsQueue("redis://127.0.0.1:1/0", sqlite_storage, settings)
    run = await make_run(sqlite_storage)
    try:
        async with asyncio.timeout(5.0):
            with pytest.raises(QueueError, match=r"127\.0\.0\.1:1 could not publish"):
                await queue.publish([run])
            with pytest.raises(QueueError, match="could not read runs"):
                await claim(queue, "worker-a", wait_seconds=1.0)
            with pytest.raises(QueueError):
                await queue.lost_messages_since_last_check()
            with pytest.raises(QueueError):
                await queue.depth()
    finally:
        await queue.close()


async def test_the_queue_error_is_one_line(sqlite_storage: Storage) -> None:
    settings = isolated_queue_settings(url="redis://127.0.0.1:1/0")
    queue = RedisStreamsQueue("redis://127.0.0.1:1/0", sqlite_storage, settings)
    try:
        with pytest.raises(QueueError) as raised:
            await claim(queue, "worker-a")
        assert "\n" not in str(raised.value)
    finally:
        await queue.close()


class FailingClaimsStorage:
    """The real storage, except that ``claim_runs`` fails as a database outage would."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self.failures_left = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    async def claim_runs(
        self, run_ids: Sequence[uuid.UUID], worker_id: str, lease_seconds: float
    ) -> list[Run]:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise StorageError("database unavailable: simulated outage")
        return await self._storage.claim_runs(run_ids, worker_id, lease_seconds)
