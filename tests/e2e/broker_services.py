"""Restart the local Redis and RabbitMQ servers the suite shares, and bring them back.

Tests that use this stop a service every other test relies on: mark them
``serial``. ``restart`` is the fault; ``ensure_running`` is for a fixture's
teardown, so a failed test never leaves the service down.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Protocol

import aio_pika

from jobsched.config.settings import QueueSettings
from jobsched.queue import create_queue
from jobsched.queue.rabbitmq_topology import Topology
from jobsched.storage.base import Storage
from tests.e2e.processes import wait_until
from tests.queue_backends import RABBITMQ_URL, REDIS_URL

REDIS_PORT = 6379
RABBITMQ_PORT = 5672
# The same command as scripts/ensure-services.sh: no RDB, no AOF, so a restart loses
# every stream (the broker state loss the backends must detect).
REDIS_START_COMMAND = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    str(REDIS_PORT),
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]
SERVICE_TIMEOUT_SECONDS = 60.0


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=SERVICE_TIMEOUT_SECONDS
    )


def _run_checked(command: list[str]) -> None:
    completed = _run(command)
    if completed.returncode != 0:
        raise AssertionError(
            f"`{' '.join(command)}` failed ({completed.returncode}):\n"
            f"{completed.stdout}{completed.stderr}"
        )


class BrokerService(Protocol):
    @property
    def name(self) -> str: ...

    def restart(self, outage_seconds: float) -> None: ...

    def ensure_running(self) -> None: ...


@dataclass(frozen=True)
class RedisService:
    """The local Redis, which keeps nothing on disk: a restart empties it."""

    name: str = "redis"

    def restart(self, outage_seconds: float) -> None:
        """Shut Redis down without saving, keep it down ``outage_seconds``, start it again."""
        _run(["redis-cli", "-p", str(REDIS_PORT), "shutdown", "nosave"])
        wait_until(
            lambda: not port_answers(REDIS_PORT),
            timeout_seconds=SERVICE_TIMEOUT_SECONDS,
            message="Redis shut down",
        )
        time.sleep(outage_seconds)  # the length of the outage, not a synchronisation
        self.ensure_running()

    def ensure_running(self) -> None:
        if not port_answers(REDIS_PORT):
            _run_checked(REDIS_START_COMMAND)
        wait_until(
            lambda: _run(["redis-cli", "-p", str(REDIS_PORT), "ping"]).stdout.strip() == "PONG",
            timeout_seconds=SERVICE_TIMEOUT_SECONDS,
            message="Redis answering PING",
        )


@dataclass(frozen=True)
class RabbitMQService:
    """The local RabbitMQ node: ``stop_app`` closes every connection; durable state survives."""

    name: str = "rabbitmq"

    def restart(self, outage_seconds: float) -> None:
        """Stop the RabbitMQ application, keep it down ``outage_seconds``, start it again."""
        _run_checked(["rabbitmqctl", "stop_app"])
        wait_until(
            lambda: not port_answers(RABBITMQ_PORT),
            timeout_seconds=SERVICE_TIMEOUT_SECONDS,
            message="RabbitMQ stopped listening",
        )
        time.sleep(outage_seconds)  # the length of the outage, not a synchronisation
        self.ensure_running()

    def ensure_running(self) -> None:
        if not port_answers(RABBITMQ_PORT):
            _run_checked(["rabbitmqctl", "start_app"])
        _run_checked(["rabbitmqctl", "await_startup"])
        wait_until(
            lambda: port_answers(RABBITMQ_PORT),
            timeout_seconds=SERVICE_TIMEOUT_SECONDS,
            message="RabbitMQ answering on its port",
        )


BROKER_SERVICES: dict[str, BrokerService] = {
    "redis": RedisService(),
    "rabbitmq": RabbitMQService(),
}


async def purge_broker_namespace(namespace: str, queue_names: list[str], storage: Storage) -> None:
    """Delete what a deployment left under ``namespace`` in Redis and in RabbitMQ.

    Runs in the test process after the deployment's processes are gone, so it
    deletes by name rather than through a queue object that declared them.
    """
    redis_queue = create_queue(QueueSettings(url=REDIS_URL, namespace=namespace), storage)
    try:
        purge = getattr(redis_queue, "purge_namespace")  # noqa: B009 - not on the RunQueue contract
        await purge()
    finally:
        await redis_queue.close()
    topology = Topology(namespace, "classic")  # the names do not depend on the queue type
    connection = await aio_pika.connect(RABBITMQ_URL, timeout=10)
    try:
        channel = await connection.channel()
        for queue in [topology.dead_queue, topology.sentinel_queue]:
            await channel.queue_delete(queue)
        for queue_name in queue_names:
            await channel.queue_delete(topology.run_queue(queue_name))
        for exchange in [topology.run_exchange, topology.dead_exchange]:
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()
