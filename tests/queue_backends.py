"""Every queue backend, built with a namespace of its own so tests never share broker state."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from jobsched.config.settings import QueueSettings
from jobsched.queue import RunQueue, create_queue
from jobsched.storage.base import Storage

REDIS_URL = "redis://127.0.0.1:6379/0"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
BACKENDS = ("database", "redis", "rabbitmq")
BACKEND_URLS: dict[str, str | None] = {
    "database": None,
    "redis": REDIS_URL,
    "rabbitmq": RABBITMQ_URL,
}


def isolated_queue_settings(**overrides: object) -> QueueSettings:
    """Queue settings with a fresh namespace (Redis key prefix, RabbitMQ name prefix)."""
    values: dict[str, object] = {"namespace": f"test-{uuid.uuid4().hex[:12]}"}
    values.update(overrides)
    return QueueSettings.model_validate(values)


@asynccontextmanager
async def open_queue(
    backend: str,
    storage: Storage,
    settings: QueueSettings,
    *,
    prefetch_count: int = 10,
    purge: bool = True,
) -> AsyncIterator[RunQueue]:
    """The ``backend`` queue over ``storage``; closed (and its broker state purged) after.

    ``purge=False`` for a second queue sharing the namespace with one still in use.
    """
    queue_settings = settings.model_copy(update={"url": BACKEND_URLS[backend]})
    queue = create_queue(queue_settings, storage, prefetch_count=prefetch_count)
    try:
        yield queue
    finally:
        await queue.close()
        purge_namespace = getattr(queue, "purge_namespace", None)
        if purge and purge_namespace is not None:
            await purge_namespace()
