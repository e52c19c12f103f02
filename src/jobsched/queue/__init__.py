"""Queue backends behind one contract (``queue.base.RunQueue``), chosen by URL scheme.

No URL (or a database URL) keeps the database queue; ``redis://`` / ``rediss://``
selects Redis Streams; ``amqp://`` / ``amqps://`` selects RabbitMQ.
"""

from __future__ import annotations

from jobsched.config.settings import QueueSettings
from jobsched.core.errors import ConfigurationError
from jobsched.queue.base import RunQueue
from jobsched.queue.database import DatabaseQueue
from jobsched.storage.base import Storage

__all__ = ["DatabaseQueue", "RunQueue", "create_queue", "queue_scheme"]

_DATABASE_SCHEMES = frozenset({"postgresql", "postgres", "sqlite"})
_REDIS_SCHEMES = frozenset({"redis", "rediss"})
_AMQP_SCHEMES = frozenset({"amqp", "amqps"})


def queue_scheme(url: str | None) -> str:
    """``database``, ``redis`` or ``rabbitmq`` for a ``queue.url``; ConfigurationError otherwise."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower() if url else None
    if scheme is None or scheme in _DATABASE_SCHEMES:
        return "database"
    if scheme in _REDIS_SCHEMES:
        return "redis"
    if scheme in _AMQP_SCHEMES:
        return "rabbitmq"
    raise ConfigurationError(
        f"queue.url scheme {scheme!r} is not supported: use redis://, amqp://, "
        "a database URL, or leave it empty for the database queue"
    )


def create_queue(
    settings: QueueSettings, storage: Storage, *, prefetch_count: int = 10
) -> RunQueue:
    """The backend ``settings.url`` selects. ``prefetch_count``: deliveries a worker may hold."""
    backend = queue_scheme(settings.url)
    if backend == "redis":
        from jobsched.queue.redis_streams import RedisStreamsQueue  # noqa: PLC0415 - optional backend

        assert settings.url is not None
        return RedisStreamsQueue(settings.url, storage, settings)
    if backend == "rabbitmq":
        from jobsched.queue.rabbitmq import RabbitMQQueue  # noqa: PLC0415 - optional backend

        assert settings.url is not None
        return RabbitMQQueue(settings.url, storage, settings, prefetch_count=prefetch_count)
    return DatabaseQueue(storage)
