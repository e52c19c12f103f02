"""The Redis Streams queue: runs travel as stream entries read through one consumer group.

Layout (``queue.redis_keys``): one stream per queue and priority level, one consumer
group per stream, one consumer per worker (its ``worker_id``). An entry carries only
the run id; the database says everything else, including whether the run may still
be claimed, so a duplicate or stale entry costs one refused claim and an ack.

Delivery and recovery:

* ``claim`` reads new entries highest level first (one atomic script, exactly up to
  ``limit``), and only if there is none blocks on every stream for up to
  ``wait_seconds``. Entries it delivers stay pending in the group until ``ack``.
* A worker that dies leaves its entries pending; every ``claim`` pass (at most every
  quarter of ``redis_reclaim_idle_seconds``) first takes over entries idle that long
  (``XAUTOCLAIM``). Their runs are usually ``running`` under the dead worker, so the
  claim is refused and the entry acknowledged; the database's lease expiry then
  rescues the run and the outbox publishes it again.
* A Redis restarted without persistence (or flushed) loses streams and groups: the
  read script re-creates them, and ``lost_messages_since_last_check`` tells the
  scheduler to publish every waiting run again.
* Streams are trimmed of acknowledged entries only (``MAINTAIN_STREAM``), once longer
  than ``redis_stream_max_length``, from ``publish`` every few seconds.

Needs Redis 7.0 or newer (``XAUTOCLAIM``, ``XINFO GROUPS`` lag, ``SET NX GET``), and a
single Redis node or a primary: the scripts touch several keys, so Redis Cluster is
not supported.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from jobsched.config.settings import QueueSettings
from jobsched.core.errors import ConfigurationError, QueueError, StorageError
from jobsched.core.models import Deliverable, Run
from jobsched.queue.redis_keys import RedisKeys, priority_level
from jobsched.queue.redis_scripts import MAINTAIN_STREAM, READ_DELIVERIES
from jobsched.storage.base import Storage

logger = logging.getLogger(__name__)

# A blocking read must end well before the socket gives up on the reply.
_SOCKET_TIMEOUT_SECONDS = 10.0
_CONNECT_TIMEOUT_SECONDS = 5.0
_BLOCK_MAX_SECONDS = 5.0
_HEALTH_CHECK_INTERVAL_SECONDS = 15
_DEAD_LETTERS_MAX_LENGTH = 10_000
_CURSOR_START = "0-0"
# Errors that mean the group (or its stream) vanished, i.e. Redis lost its data.
_GROUP_GONE_PREFIXES = ("NOGROUP", "UNBLOCKED")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stream entry handed to a consumer; ``run_id`` is None for an entry not ours."""

    stream: str
    entry_id: str
    run_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class BrokerIdentity:
    """What tells one Redis dataset from another: our epoch token, and the server's run id."""

    token: str
    server_run_id: str | None


def messages_lost(
    seen: BrokerIdentity | None, current: BrokerIdentity, *, marker_created: bool
) -> bool:
    """Whether the broker may have lost messages between ``seen`` and ``current``.

    First look (``seen`` None): lost only if the epoch marker had to be created, which
    a brand-new namespace also does, once; republishing then finds nothing or
    duplicates, both harmless. Later looks: lost if the marker changed (the data was
    flushed) or the server restarted (a new run id: with no persistence everything
    is gone, with snapshots the latest entries are).
    """
    if seen is None:
        return marker_created
    restarted = (
        seen.server_run_id is not None
        and current.server_run_id is not None
        and seen.server_run_id != current.server_run_id
    )
    return restarted or current.token != seen.token


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _group_gone(error: ResponseError) -> bool:
    return str(error).startswith(_GROUP_GONE_PREFIXES)


def _client_name(namespace: str) -> str:
    """``jobsched:{namespace}`` with what CLIENT SETNAME refuses (spaces, newlines) replaced."""
    return "jobsched:" + "".join(
        character if character.isascii() and character.isprintable() and character != " " else "_"
        for character in namespace
    )


def _run_id(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


class RedisStreamsQueue:
    commits_are_publishes = False

    def __init__(
        self,
        url: str,
        storage: Storage,
        settings: QueueSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        maintenance_interval_seconds: float = 5.0,
        idle_consumer_seconds: float = 3600.0,
    ) -> None:
        """``clock`` (monotonic seconds) paces reclaim and maintenance passes.

        ``idle_consumer_seconds``: a consumer holding nothing, silent this long, is deleted.
        """
        self._url = url
        self._storage = storage
        self._settings = settings
        self._clock = clock
        self._maintenance_interval_seconds = maintenance_interval_seconds
        self._idle_consumer_seconds = idle_consumer_seconds
        self._keys = RedisKeys(settings.namespace)
        parts = urlsplit(url)
        self._address = f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
        self._client = self._connect()
        self._read_script = self._client.register_script(READ_DELIVERIES)
        self._maintain_script = self._client.register_script(MAINTAIN_STREAM)
        self._reclaim_min_idle_ms = max(1, int(settings.redis_reclaim_idle_seconds * 1000))
        self._reclaim_interval_seconds = settings.redis_reclaim_idle_seconds / 4
        self._reclaim_due_at = float("-inf")
        self._reclaim_cursors: dict[str, str] = {}
        self._maintenance_due_at = float("-inf")
        self._published_streams: set[str] = set()
        self._delivered: dict[uuid.UUID, Delivery] = {}
        self._seen_identity: BrokerIdentity | None = None

    def _connect(self) -> Redis:
        try:
            return Redis.from_url(
                self._url,
                decode_responses=True,
                socket_timeout=_SOCKET_TIMEOUT_SECONDS,
                socket_connect_timeout=_CONNECT_TIMEOUT_SECONDS,
                health_check_interval=_HEALTH_CHECK_INTERVAL_SECONDS,
                # One immediate retry absorbs a pooled connection that died with a
                # restarted Redis; longer outages are the caller's to back off from.
                retry=Retry(NoBackoff(), 1),
                # CLIENT LIST then tells an operator which deployment a connection serves.
                client_name=_client_name(self._settings.namespace),
            )
        except ValueError as error:
            raise ConfigurationError(f"queue.url is not a usable Redis URL: {error}") from error

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn any Redis failure into a one-line ``QueueError``."""
        try:
            yield
        except (RedisError, OSError) as error:
            raise QueueError(
                f"Redis queue at {self._address} could not {action}: {_one_line(error)}"
            ) from error

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()

    async def purge_namespace(self) -> None:
        """Delete every key of this queue's namespace (tests and decommissioning)."""
        client = self._connect()
        try:
            with self._errors("purge its namespace"):
                batch: list[str] = []
                async for key in client.scan_iter(match=self._keys.namespace_pattern(), count=500):
                    batch.append(key)
                    if len(batch) >= 500:
                        await client.unlink(*batch)
                        batch.clear()
                if batch:
                    await client.unlink(*batch)
        finally:
            await client.aclose()

    # --- publishing --------------------------------------------------------------

    async def publish(self, runs: Sequence[Deliverable]) -> None:
        if not runs:
            return
        streams = [self._keys.stream(run.queue, priority_level(run.priority)) for run in runs]
        with self._errors(f"publish {len(runs)} runs"):
            pipeline = self._client.pipeline(transaction=False)
            for stream, run in zip(streams, runs, strict=True):
                pipeline.xadd(stream, {"run_id": str(run.id)})
            await pipeline.execute()
        self._published_streams.update(streams)
        if self._clock() >= self._maintenance_due_at:
            await self._maintain_quietly()

    async def _maintain_quietly(self) -> None:
        # Runs after a publish that succeeded: a failure here must not fail the publish.
        try:
            await self.maintain_streams()
        except QueueError as error:
            logger.warning("stream maintenance failed, retrying later: %s", error)

    async def maintain_streams(self) -> tuple[int, int]:
        """Trim the streams this queue published to and drop gone consumers, now.

        Returns (entries trimmed, consumers deleted). Only entries acknowledged by
        every group are trimmed, and only from streams longer than
        ``redis_stream_max_length``; ``publish`` calls this every few seconds.
        """
        self._maintenance_due_at = self._clock() + self._maintenance_interval_seconds
        streams = sorted(self._published_streams)
        if not streams:
            return (0, 0)
        with self._errors("trim its streams"):
            pipeline = self._client.pipeline(transaction=False)
            for stream in streams:
                await self._maintain_script(
                    keys=[stream],
                    args=[
                        self._settings.redis_stream_max_length,
                        int(self._idle_consumer_seconds * 1000),
                    ],
                    client=pipeline,
                )
            replies = await pipeline.execute()
        return (sum(int(reply[0]) for reply in replies), sum(int(reply[1]) for reply in replies))

    # --- claiming ----------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        queues: Sequence[str],
        limit: int,
        lease_seconds: float,
        wait_seconds: float,
    ) -> list[Run]:
        if limit <= 0 or not queues:
            return []
        streams = self._keys.streams_by_priority(queues)
        with self._errors("read runs"):
            deliveries = await self._read_deliveries(streams, worker_id, limit)
            if not deliveries:
                deliveries = await self._wait_for_deliveries(
                    streams, worker_id, limit, wait_seconds
                )
        if not deliveries:
            return []
        return await self._claim_delivered(deliveries, worker_id, limit, lease_seconds)

    async def _read_deliveries(
        self, streams: list[str], worker_id: str, limit: int
    ) -> list[Delivery]:
        """Reclaimed and new entries, up to ``limit``, highest level first (no waiting)."""
        reclaim = self._clock() >= self._reclaim_due_at
        cursors = [self._reclaim_cursors.get(stream, _CURSOR_START) for stream in streams]
        reply = await self._read_script(
            keys=streams,
            args=[
                self._keys.group,
                worker_id,
                limit,
                self._reclaim_min_idle_ms if reclaim else -1,
                *cursors,
            ],
        )
        next_cursors, flat = reply[0], reply[1]
        self._reclaim_cursors.update(zip(streams, next_cursors, strict=True))
        deliveries = [
            Delivery(streams[int(flat[index]) - 1], flat[index + 1], _run_id(flat[index + 2]))
            for index in range(0, len(flat), 3)
        ]
        walked_every_backlog = all(cursor == _CURSOR_START for cursor in next_cursors)
        if reclaim and walked_every_backlog and len(deliveries) < limit:
            self._reclaim_due_at = self._clock() + self._reclaim_interval_seconds
        return deliveries

    async def _wait_for_deliveries(
        self, streams: list[str], worker_id: str, limit: int, wait_seconds: float
    ) -> list[Delivery]:
        """New entries from whichever streams get some first, within ``wait_seconds``.

        The wait is capped below the socket timeout; waiting less is allowed ("up to").
        May return more than ``limit`` (one batch per stream): the caller releases the rest.
        """
        # BLOCK 0 would wait forever: anything under a millisecond means do not wait.
        block_ms = int(min(wait_seconds, _BLOCK_MAX_SECONDS) * 1000)
        if block_ms < 1:
            return []
        try:
            reply: Any = await self._client.xreadgroup(
                self._keys.group,
                worker_id,
                dict.fromkeys(streams, ">"),
                count=limit,
                block=block_ms,
            )
        except ResponseError as error:
            if _group_gone(error):
                # Redis lost the group while we waited; the next read re-creates it.
                return []
            raise
        rank = {stream: position for position, stream in enumerate(streams)}
        deliveries = [
            Delivery(stream, entry_id, _run_id(fields.get("run_id", "")))
            for stream, entries in _entries_by_stream(reply)
            for entry_id, fields in entries
        ]
        deliveries.sort(key=lambda delivery: rank[delivery.stream])
        return deliveries

    async def _claim_delivered(
        self, deliveries: list[Delivery], worker_id: str, limit: int, lease_seconds: float
    ) -> list[Run]:
        """Claim the deliveries' runs in the database; acknowledge the ones refused."""
        kept, overflow = deliveries[:limit], deliveries[limit:]
        if overflow:
            await self._release(overflow, worker_id)
        by_run: dict[uuid.UUID, Delivery] = {}
        spent: list[Delivery] = []
        for delivery in kept:
            if delivery.run_id is None or delivery.run_id in by_run:
                spent.append(delivery)
            else:
                by_run[delivery.run_id] = delivery
        try:
            claimed = await self._storage.claim_runs(list(by_run), worker_id, lease_seconds)
        except StorageError:
            # Nothing was claimed: hand the entries back for the next claim to retry.
            await self._release(kept, worker_id)
            raise
        claimed_ids = {run.id for run in claimed}
        spent.extend(delivery for run_id, delivery in by_run.items() if run_id not in claimed_ids)
        for run in claimed:
            self._delivered[run.id] = by_run[run.id]
        await self._acknowledge_quietly(spent)
        return sorted(claimed, key=lambda run: -run.priority)

    async def _release(self, deliveries: list[Delivery], worker_id: str) -> None:
        """Give entries we read but will not claim back to the next reclaim pass.

        Redis cannot un-deliver an entry; marking it idle for the reclaim threshold
        makes the next reclaim (ours, forced now, or any other worker's) take it over.
        Best effort: if it fails the entries are reclaimed after the idle time anyway.
        """
        try:
            pipeline = self._client.pipeline(transaction=False)
            for stream, entry_ids in _entry_ids_by_stream(deliveries).items():
                message_ids: list[Any] = entry_ids  # redis-py types ids invariantly
                pipeline.xclaim(
                    stream,
                    self._keys.group,
                    worker_id,
                    0,
                    message_ids,
                    idle=self._reclaim_min_idle_ms,
                    justid=True,
                )
            await pipeline.execute()
        except (RedisError, OSError) as error:
            logger.warning("could not release %d Redis entries: %s", len(deliveries), error)
        self._reclaim_due_at = float("-inf")
        self._reclaim_cursors.clear()

    async def _acknowledge_quietly(self, deliveries: list[Delivery]) -> None:
        # The runs were claimed already: failing the claim now would strand them until
        # their leases expire, while an unacknowledged spent entry is merely reclaimed
        # and acknowledged again later.
        try:
            await self._acknowledge(deliveries)
        except (RedisError, OSError) as error:
            logger.warning("could not acknowledge %d Redis entries: %s", len(deliveries), error)

    # --- acknowledging -----------------------------------------------------------

    async def ack(self, runs: Sequence[Run]) -> None:
        """Runs not delivered through this queue object (or acknowledged already) are skipped.

        The deliveries are forgotten even if Redis fails: their entries stay pending,
        are reclaimed later, refused (the run is finished) and acknowledged then.
        """
        deliveries = self._forget(runs)
        with self._errors(f"acknowledge {len(deliveries)} runs"):
            await self._acknowledge(deliveries)

    async def dead_letter(self, runs: Sequence[Run]) -> None:
        """Record each run on the capped ``{namespace}:dead`` stream and acknowledge it.

        The trail is for inspection; the run itself stays ``dead`` in the database.
        """
        deliveries = self._forget(runs)
        if not deliveries:
            return
        with self._errors(f"dead-letter {len(deliveries)} runs"):
            pipeline = self._client.pipeline(transaction=True)
            for delivery in deliveries:
                pipeline.xadd(
                    self._keys.dead_letters,
                    {
                        "run_id": str(delivery.run_id),
                        "stream": delivery.stream,
                        "entry_id": delivery.entry_id,
                    },
                    maxlen=_DEAD_LETTERS_MAX_LENGTH,
                    approximate=True,
                )
                pipeline.xack(delivery.stream, self._keys.group, delivery.entry_id)
            await pipeline.execute()

    def _forget(self, runs: Sequence[Run]) -> list[Delivery]:
        forgotten = (self._delivered.pop(run.id, None) for run in runs)
        return [delivery for delivery in forgotten if delivery is not None]

    async def _acknowledge(self, deliveries: list[Delivery]) -> None:
        if not deliveries:
            return
        # XACK answers 0 when Redis lost the stream or group: the entries went with them.
        pipeline = self._client.pipeline(transaction=False)
        for stream, entry_ids in _entry_ids_by_stream(deliveries).items():
            pipeline.xack(stream, self._keys.group, *entry_ids)
        await pipeline.execute()

    # --- watching the broker -----------------------------------------------------

    async def lost_messages_since_last_check(self) -> bool:
        """True once per queue object for each time Redis lost (or may have lost) its data.

        ``{namespace}:epoch`` holds a random token, created if missing (``SET NX``).
        The first call on this object answers True only if it had to create the token
        (a flushed or restarted-empty Redis, or a brand-new namespace, which is told
        once, harmlessly). Later calls answer True if the token changed or vanished
        (keys flushed) or Redis' ``run_id`` changed (a restart: empty without
        persistence, rolled back to a snapshot with it). Every scheduler replica
        running across the loss sees it. A caller that fails to act on a True must
        remember it itself: the next call answers False.
        """
        with self._errors("check for lost messages"):
            pipeline = self._client.pipeline(transaction=False)
            pipeline.set(self._keys.epoch, uuid.uuid4().hex, nx=True, get=True)
            pipeline.info("server")
            previous_token, server_info = await pipeline.execute(raise_on_error=False)
            if isinstance(previous_token, Exception):
                raise previous_token
            marker_created = previous_token is None
            # A creator reads back whichever token won (another replica may race it).
            token = await self._client.get(self._keys.epoch) if marker_created else previous_token
        server_run_id = server_info.get("run_id") if isinstance(server_info, dict) else None
        current = BrokerIdentity(str(token), server_run_id)
        lost = messages_lost(self._seen_identity, current, marker_created=marker_created)
        self._seen_identity = current
        return lost

    async def ping(self) -> None:
        with self._errors("answer a ping"):
            await self._client.ping()

    async def depth(self) -> dict[str, int]:
        """Entries not yet delivered, per queue, over its levels (waiting, not running).

        A stream no worker has read yet (no group) counts its whole length.
        """
        with self._errors("measure queue depth"):
            streams = [
                key
                async for key in self._client.scan_iter(
                    match=self._keys.streams_pattern(), count=500, _type="STREAM"
                )
            ]
            pipeline = self._client.pipeline(transaction=False)
            for stream in streams:
                pipeline.xlen(stream)
                pipeline.xinfo_groups(stream)
            replies = await pipeline.execute(raise_on_error=False)
        depths: dict[str, int] = {}
        for position, stream in enumerate(streams):
            queue = self._keys.queue_of_stream(stream)
            length, groups = replies[2 * position], replies[2 * position + 1]
            if queue is None or isinstance(length, Exception):
                continue  # not ours, or deleted since the scan
            depths[queue] = depths.get(queue, 0) + self._waiting(length, groups)
        return depths

    def _waiting(self, length: int, groups: Any) -> int:
        if isinstance(groups, list):
            for group in groups:
                if group.get("name") == self._keys.group and group.get("lag") is not None:
                    return int(group["lag"])
        # No group yet (nothing read) or a lag Redis cannot tell: the length bounds it.
        return int(length)


def _entries_by_stream(reply: Any) -> list[tuple[str, list[Any]]]:
    """An XREADGROUP reply as (stream, [(entry id, fields)]) pairs, whatever the protocol.

    RESP2 (the default) answers [[stream, entries]]; RESP3 (``?protocol=3`` in the
    URL) answers {stream: [entries]}.
    """
    if isinstance(reply, dict):
        return [(stream, batches[0] if batches else []) for stream, batches in reply.items()]
    return [(stream, entries) for stream, entries in reply or []]


def _entry_ids_by_stream(deliveries: list[Delivery]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for delivery in deliveries:
        grouped.setdefault(delivery.stream, []).append(delivery.entry_id)
    return grouped
