"""The RabbitMQ queue: durable queues, persistent messages, publisher confirms, priorities.

Names and queue arguments are in ``queue.rabbitmq_topology``: one durable queue
per jobsched queue, fed by a direct exchange, dead-lettering to a fanout exchange
and its queue.

**Publishing.** A message is a run id (UTF-8 text, also its ``message_id``),
persistent, with the run's priority mapped to AMQP 0..9. ``publish`` waits for the
broker's confirms of the whole batch and raises ``QueueError`` if any is missing
(nack, unroutable, timeout, lost connection): the outbox publishes the batch
again, and the duplicates that can cause are refused at claim time.

**Claiming.** One consumer per jobsched queue, started by the first claim naming
it, on a channel whose ``prefetch_count`` is twice the worker's concurrency (its
executing runs, and as many whose outcomes are being written): the broker pushes
at most that many unacknowledged deliveries to this process. ``claim``
takes buffered deliveries, claims their runs in the database, acks at once the
deliveries whose runs it could not claim (duplicates, finished or cancelled runs)
and keeps the rest until the worker ``ack``s or ``dead_letter``s them, after the
outcome is committed. If the database claim fails, its deliveries stay buffered
for the next claim. A worker that dies leaves its deliveries unacknowledged and
the broker hands them to another consumer.

**Outages.** aio-pika's robust connection reconnects in the background and
declares exchanges, queues, bindings, QoS and consumers again; meanwhile every
call raises ``QueueError`` within ``operation_timeout_seconds``. Deliveries
received before a reconnect belong to a closed channel and the broker has
requeued them: they are dropped from the buffer, acking them is a no-op, and if
their run was claimed the redelivered copy is refused and acked. The connection
is opened by the first call, not the constructor, so a broker down at start-up
fails that call only.

**Caveats.** RabbitMQ closes a channel holding a delivery unacknowledged longer
than its ``consumer_timeout`` (30 minutes by default); a longer run then loses
its delivery harmlessly (the outcome still commits, the redelivered copy is
refused), but the channel's other deliveries are redelivered too, so raise
``consumer_timeout`` for long jobs. Quorum queues on RabbitMQ 4 dead-letter a
message delivered more than ``delivery-limit`` (20) times; the redeliveries here
come only from dying consumers, but a run dead-lettered that way stays waiting
in the database, and ``jobsched`` does not publish it again by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
    AbstractRobustQueue,
    UnderlayConnection,
)
from aio_pika.exceptions import (
    AMQPError,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
)
from pamqp.exceptions import PAMQPException
from yarl import URL

from jobsched.config.settings import QueueSettings
from jobsched.core.errors import QueueError
from jobsched.core.models import Deliverable, Run
from jobsched.queue.rabbitmq_deliveries import DeliveryBuffer, UnsettledTags
from jobsched.queue.rabbitmq_topology import (
    Topology,
    amqp_priority,
    choose_queue_type,
    parse_server_version,
)
from jobsched.storage.base import Storage

logger = logging.getLogger(__name__)

_BROKER_ERRORS = (AMQPError, ChannelInvalidStateError, OSError, PAMQPException)
# aio-pika retries a lost connection at a fixed interval, not a doubling one: retry
# every second, or sooner if ``reconnect_backoff_max_seconds`` asks for less.
_RECONNECT_INTERVAL_SECONDS = 1.0
_SENTINEL_BODY = b"jobsched: this namespace's broker state is intact"


@dataclass(frozen=True, slots=True)
class _Session:
    """One robust connection with its channels; it outlives reconnects."""

    connection: AbstractRobustConnection
    topology: Topology
    publish_channel: AbstractRobustChannel
    run_exchange: AbstractRobustExchange
    consume_channel: AbstractRobustChannel


class RabbitMQQueue:
    """The ``RunQueue`` on RabbitMQ. ``prefetch_count``: deliveries a worker holds at once."""

    commits_are_publishes = False

    def __init__(
        self,
        url: str,
        storage: Storage,
        settings: QueueSettings,
        *,
        prefetch_count: int = 10,
        operation_timeout_seconds: float = 10.0,
    ) -> None:
        self._url = url
        self._storage = storage
        self._namespace = settings.namespace
        self._queue_type_setting = settings.rabbitmq_queue_type
        self._reconnect_interval_seconds = min(
            _RECONNECT_INTERVAL_SECONDS, settings.reconnect_backoff_max_seconds
        )
        self._prefetch_count = prefetch_count
        self._timeout_seconds = operation_timeout_seconds
        self._session: _Session | None = None
        self._session_lock = asyncio.Lock()
        self._consumer_lock = asyncio.Lock()
        self._closed = False
        self._buffer = DeliveryBuffer()
        self._unsettled = UnsettledTags()
        # Deliveries of claimed runs, by (run id, attempt): a run rescued and claimed
        # again here while its first attempt still runs has two deliveries.
        self._held: dict[tuple[uuid.UUID, int], AbstractIncomingMessage] = {}
        self._publishable: set[str] = set()  # jobsched queues declared for publishing
        self._consuming: set[str] = set()
        self._known_queues: set[str] = set()  # jobsched queues touched, for ``depth``
        self._declared_queues: set[str] = set()  # broker names, for ``purge_namespace``
        self._declared_exchanges: set[str] = set()

    # --- connection -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _broker_call(self, action: str) -> AsyncIterator[None]:
        """Bound a broker conversation by the timeout; its failures become one-line QueueErrors."""
        try:
            async with asyncio.timeout(self._timeout_seconds):
                yield
        except TimeoutError as error:
            raise QueueError(
                f"RabbitMQ did not {action} within {self._timeout_seconds:g}s"
            ) from error
        except _BROKER_ERRORS as error:
            raise QueueError(f"RabbitMQ could not {action}: {_describe(error)}") from error

    async def _connected(self) -> _Session:
        if self._closed:
            raise QueueError("the RabbitMQ queue is closed")
        session = self._session
        if session is None:
            async with self._session_lock:
                session = self._session or await self._open_session()
                self._session = session
            if self._closed:  # closed while connecting
                await self.close()
                raise QueueError("the RabbitMQ queue is closed")
        return session

    async def _open_session(self) -> _Session:
        connection = aio_pika.RobustConnection(
            URL(self._url),
            reconnect_interval=self._reconnect_interval_seconds,
            client_properties={"connection_name": f"jobsched {self._namespace}"},
        )
        try:
            async with self._broker_call("connect"):
                await connection.connect(timeout=self._timeout_seconds)
            topology = Topology(
                self._namespace,
                choose_queue_type(self._queue_type_setting, _server_version(connection)),
            )
            async with self._broker_call("declare the namespace's exchanges and queues"):
                return await self._declare_topology(connection, topology)
        except BaseException:
            # Also ends the connection's background reconnection task.
            await self._close_quietly(connection)
            raise

    async def _declare_topology(
        self, connection: AbstractRobustConnection, topology: Topology
    ) -> _Session:
        publish_channel = connection.channel(publisher_confirms=True, on_return_raises=True)
        await publish_channel.initialize(timeout=self._timeout_seconds)
        self._declared_exchanges.update({topology.run_exchange, topology.dead_exchange})
        self._declared_queues.add(topology.dead_queue)
        run_exchange = await publish_channel.declare_exchange(
            topology.run_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        dead_exchange = await publish_channel.declare_exchange(
            topology.dead_exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead_queue = await publish_channel.declare_queue(
            topology.dead_queue, durable=True, arguments=topology.dead_queue_arguments()
        )
        await dead_queue.bind(dead_exchange)
        consume_channel = connection.channel(publisher_confirms=False)
        await consume_channel.initialize(timeout=self._timeout_seconds)
        await consume_channel.set_qos(prefetch_count=self._prefetch_count)
        return _Session(connection, topology, publish_channel, run_exchange, consume_channel)

    async def _close_quietly(self, connection: AbstractRobustConnection) -> None:
        with contextlib.suppress(TimeoutError, *_BROKER_ERRORS):
            async with asyncio.timeout(self._timeout_seconds):
                await connection.close()

    async def _declare_run_queue(
        self, channel: AbstractRobustChannel, topology: Topology, queue_name: str
    ) -> AbstractRobustQueue:
        broker_name = topology.run_queue(queue_name)
        self._known_queues.add(queue_name)
        self._declared_queues.add(broker_name)
        queue = await channel.declare_queue(
            broker_name, durable=True, arguments=topology.run_queue_arguments()
        )
        await queue.bind(topology.run_exchange, routing_key=queue_name)
        return queue

    async def close(self) -> None:
        """Close the connection; the broker hands unacknowledged deliveries to other consumers."""
        self._closed = True
        self._buffer.wake()
        self._buffer.drain()
        self._held.clear()
        self._unsettled.clear()
        session, self._session = self._session, None
        if session is not None:
            await self._close_quietly(session.connection)

    async def purge_namespace(self) -> None:
        """Delete every queue and exchange this instance declared, messages included.

        For tests and for retiring a deployment; works after ``close``.
        """
        queues, exchanges = sorted(self._declared_queues), sorted(self._declared_exchanges)
        if not queues and not exchanges:
            return
        async with self._broker_call("delete the namespace's queues and exchanges"):
            connection = await aio_pika.connect(URL(self._url), timeout=self._timeout_seconds)
            try:
                channel = await connection.channel(publisher_confirms=False)
                for queue in queues:
                    await channel.queue_delete(queue)
                for exchange in exchanges:
                    await channel.exchange_delete(exchange)
            finally:
                await connection.close()
        self._declared_queues.clear()
        self._declared_exchanges.clear()

    # --- publishing -------------------------------------------------------------

    async def publish(self, runs: Sequence[Deliverable]) -> None:
        if not runs:
            return
        session = await self._connected()
        _require_connection(session)
        queue_names = {run.queue for run in runs}
        async with self._broker_call(f"confirm {len(runs)} published run(s)"):
            for queue_name in sorted(queue_names - self._publishable):
                await self._declare_run_queue(session.publish_channel, session.topology, queue_name)
                self._publishable.add(queue_name)
            results = await asyncio.gather(
                *(self._publish_one(session, run) for run in runs), return_exceptions=True
            )
            failure = next(
                (result for result in results if isinstance(result, BaseException)), None
            )
            if failure is not None:
                # An unroutable run means its queue vanished (deleted by an operator):
                # declare the queues again on the outbox's next attempt.
                self._publishable.difference_update(queue_names)
                if isinstance(failure, Exception):
                    raise failure
                # A confirmation cancelled under us is no confirmation either.
                raise QueueError(f"RabbitMQ did not confirm a published run: {failure!r}")

    async def _publish_one(self, session: _Session, run: Deliverable) -> None:
        message = aio_pika.Message(
            str(run.id).encode("utf-8"),
            message_id=str(run.id),
            content_type="text/plain",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            priority=amqp_priority(run.priority),
        )
        await session.run_exchange.publish(message, routing_key=run.queue, mandatory=True)

    # --- claiming ---------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        queues: Sequence[str],
        limit: int,
        lease_seconds: float,
        wait_seconds: float,
    ) -> list[Run]:
        session = await self._connected()
        _require_connection(session)
        await self._start_consumers(session, queues)
        if limit <= 0:
            return []
        deliveries = await self._buffer.take(limit, wait_seconds)
        return await self._claim_deliveries(deliveries, worker_id, lease_seconds)

    async def _start_consumers(self, session: _Session, queues: Sequence[str]) -> None:
        if all(queue_name in self._consuming for queue_name in queues):
            return
        async with self._consumer_lock, self._broker_call("start consuming"):
            for queue_name in dict.fromkeys(queues):
                if queue_name in self._consuming:
                    continue
                queue = await self._declare_run_queue(
                    session.consume_channel, session.topology, queue_name
                )
                await queue.consume(self._on_delivery)
                self._consuming.add(queue_name)

    async def _on_delivery(self, message: AbstractIncomingMessage) -> None:
        if not self._closed:  # closing: the broker takes the delivery back
            self._unsettled.received(message)
            self._buffer.put(message)

    async def _claim_deliveries(
        self, deliveries: list[AbstractIncomingMessage], worker_id: str, lease_seconds: float
    ) -> list[Run]:
        by_run, unreadable = _group_by_run(
            [delivery for delivery in deliveries if not _is_stale(delivery)]
        )
        await self._settle_unclaimed(unreadable, dead_letter=True)
        if not by_run:
            return []
        try:
            claimed = await self._storage.claim_runs(list(by_run), worker_id, lease_seconds)
        except BaseException:
            # Kept here rather than nacked: the next claim retries them without a
            # round trip, and without counting a redelivery against a quorum queue's
            # delivery limit.
            self._buffer.put_back([message for group in by_run.values() for message in group])
            raise
        surplus: list[AbstractIncomingMessage] = []
        for run in claimed:
            first, *duplicates = by_run.pop(run.id)
            self._held[(run.id, run.attempt)] = first
            surplus.extend(duplicates)
        for group in by_run.values():
            surplus.extend(group)
        await self._settle_unclaimed(surplus, dead_letter=False)
        # Stable: equal priorities keep the broker's (arrival) order.
        return sorted(claimed, key=lambda run: run.priority, reverse=True)

    # --- settling deliveries ----------------------------------------------------

    async def ack(self, runs: Sequence[Run]) -> None:
        await self._settle_held(runs, dead_letter=False)

    async def dead_letter(self, runs: Sequence[Run]) -> None:
        """Reject the deliveries without requeueing: the broker moves them to ``{ns}.dead``.

        A delivery from before a reconnect is gone; its redelivered copy is refused at
        claim time and acked, so it never reaches the dead queue. The run's ``dead``
        status in the database is the record that counts.
        """
        await self._settle_held(runs, dead_letter=True)

    async def _settle_held(self, runs: Sequence[Run], *, dead_letter: bool) -> None:
        """Settle the deliveries of claimed runs; runs without one here are ignored."""
        deliveries = [
            delivery
            for run in runs
            if (delivery := self._held.pop((run.id, run.attempt), None)) is not None
        ]
        if not dead_letter:
            await self._ack_together(deliveries)
            return
        first_error: QueueError | None = None
        for delivery in deliveries:
            try:
                await self._settle(delivery, dead_letter=dead_letter)
            except QueueError as error:
                first_error = first_error or error
        if first_error is not None:
            raise first_error

    async def _ack_together(self, deliveries: list[AbstractIncomingMessage]) -> None:
        """Ack ``deliveries`` in as few frames as the other unsettled deliveries allow."""
        live = []
        for delivery in deliveries:
            if not _is_stale(delivery):
                live.append(delivery)
        try:
            async with self._broker_call(f"acknowledge {len(live)} deliveries"):
                for delivery, multiple in self._unsettled.plan_acks(live):
                    await delivery.ack(multiple=multiple)
        finally:
            # Acked, or (on failure) the channel is going: the broker requeues them
            # and their redelivered copies are refused at claim time.
            for delivery in live:
                self._unsettled.settled(delivery)

    async def _settle_unclaimed(
        self, deliveries: list[AbstractIncomingMessage], *, dead_letter: bool
    ) -> None:
        """Settle deliveries no worker will run; a failure only means they come back, refused."""
        for delivery in deliveries:
            try:
                await self._settle(delivery, dead_letter=dead_letter)
            except QueueError as error:
                logger.warning("a redundant delivery was not acknowledged: %s", error)

    async def _settle(self, delivery: AbstractIncomingMessage, *, dead_letter: bool) -> None:
        if _is_stale(delivery):
            logger.debug("delivery %s came before a reconnect; the broker requeued it", delivery)
            return
        try:
            async with self._broker_call("settle a delivery"):
                if dead_letter:
                    await delivery.reject(requeue=False)
                else:
                    await delivery.ack()
        finally:
            self._unsettled.settled(delivery)

    # --- observing --------------------------------------------------------------

    async def lost_messages_since_last_check(self) -> bool:
        """True once the sentinel message is gone: the broker lost this namespace's state.

        RabbitMQ keeps durable queues and persistent messages across restarts, so a
        restart loses nothing. A node whose data was wiped (a container without a
        volume), or an operator deleting the namespace's queues, does; the robust
        connection then quietly declares the queues again, empty. The sentinel, one
        persistent message in a queue nobody consumes, tells: when it is missing it
        is put back and True returned. A new namespace reports True once too, which
        makes the outbox republish the (no) waiting runs. Messages purged from a run
        queue by hand are not detected.
        """
        session = await self._connected()
        sentinel = session.topology.sentinel_queue
        async with self._broker_call("check the sentinel queue"):
            if (await self._ready_counts(session, [sentinel]))[sentinel]:
                return False
            await self._put_sentinel(session)
            return True

    async def _put_sentinel(self, session: _Session) -> None:
        sentinel = session.topology.sentinel_queue
        self._declared_queues.add(sentinel)
        channel = await self._probe_channel(session, publisher_confirms=True)
        try:
            await channel.queue_declare(
                sentinel, durable=True, arguments=session.topology.sentinel_queue_arguments()
            )
            confirmation = await channel.basic_publish(
                _SENTINEL_BODY,
                routing_key=sentinel,
                properties=aiormq.spec.Basic.Properties(delivery_mode=2),  # persistent
            )
        finally:
            await channel.close()
        if not isinstance(confirmation, aiormq.spec.Basic.Ack):
            raise QueueError(f"RabbitMQ refused the sentinel message: {confirmation!r}")

    async def ping(self) -> None:
        """Open and close a channel on the live connection: the broker answered."""
        session = await self._connected()
        async with self._broker_call("open a channel"):
            channel = await self._probe_channel(session, publisher_confirms=False)
            await channel.close()

    async def depth(self) -> dict[str, int]:
        """Ready messages per jobsched queue this instance published to or consumes.

        Deliveries already pushed to a consumer (prefetched, or held by a running run)
        are not waiting for a worker and not counted. Queues this process has not
        touched since it started are unknown to it and not reported.
        """
        session = await self._connected()
        names = {name: session.topology.run_queue(name) for name in sorted(self._known_queues)}
        async with self._broker_call("count waiting runs"):
            counts = await self._ready_counts(session, list(names.values()))
        return {name: counts[broker_name] or 0 for name, broker_name in names.items()}

    async def _ready_counts(
        self, session: _Session, broker_names: list[str]
    ) -> dict[str, int | None]:
        """Ready messages per queue (passive declares); None for a queue that does not exist."""
        counts: dict[str, int | None] = {}
        channel: aiormq.abc.AbstractChannel | None = None
        try:
            for name in broker_names:
                if channel is None or channel.is_closed:
                    channel = await self._probe_channel(session, publisher_confirms=False)
                try:
                    declared = await channel.queue_declare(name, passive=True)
                except ChannelNotFoundEntity:
                    counts[name] = (
                        None  # the broker closed the channel; the next name opens another
                    )
                else:
                    counts[name] = declared.message_count or 0
        finally:
            if channel is not None and not channel.is_closed:
                await channel.close()
        return counts

    async def _probe_channel(
        self, session: _Session, *, publisher_confirms: bool
    ) -> aiormq.abc.AbstractChannel:
        """A plain channel outside the robust machinery, which a 404 may close without harm."""
        transport = _require_connection(session)
        return await transport.connection.channel(publisher_confirms=publisher_confirms)


def _require_connection(session: _Session) -> UnderlayConnection:
    """The live transport; ``QueueError`` at once while the robust connection reconnects."""
    transport = session.connection.transport
    if transport is None or not session.connection.connected.is_set():
        raise QueueError("the connection to RabbitMQ is lost; reconnecting")
    return transport


def _server_version(connection: AbstractRobustConnection) -> tuple[int, ...]:
    transport = connection.transport
    if transport is None:
        return (0,)
    return parse_server_version(transport.connection.server_properties.get("version"))


def _is_stale(delivery: AbstractIncomingMessage) -> bool:
    """True if the channel it came on is closed: the broker has requeued it already."""
    try:
        return delivery.channel.is_closed
    except ChannelInvalidStateError:  # aio-pika's way of saying the channel is closed
        return True


def _group_by_run(
    deliveries: list[AbstractIncomingMessage],
) -> tuple[dict[uuid.UUID, list[AbstractIncomingMessage]], list[AbstractIncomingMessage]]:
    """Deliveries by the run id in their body, and those whose body is no run id."""
    by_run: dict[uuid.UUID, list[AbstractIncomingMessage]] = {}
    unreadable: list[AbstractIncomingMessage] = []
    for delivery in deliveries:
        try:
            run_id = uuid.UUID(delivery.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            logger.warning("dead-lettering a delivery whose body is not a run id: %r", delivery)
            unreadable.append(delivery)
        else:
            by_run.setdefault(run_id, []).append(delivery)
    return by_run, unreadable


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "no details"
    if isinstance(error, ChannelPreconditionFailed):
        text += (
            " (a queue exists with other arguments: delete it, or set"
            " queue.rabbitmq_queue_type to the type it has)"
        )
    return f"{type(error).__name__}: {text}"
