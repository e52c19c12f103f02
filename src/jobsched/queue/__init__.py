"""Queue backends behind one contract (``queue.base.RunQueue``), chosen by URL scheme."""

from __future__ import annotations

from jobsched.core.errors import ConfigurationError
from jobsched.queue.base import RunQueue
from jobsched.queue.database import DatabaseQueue
from jobsched.storage.base import Storage

__all__ = ["DatabaseQueue", "RunQueue", "create_queue"]

_DATABASE_SCHEMES = ("postgresql", "postgres", "sqlite")


def create_queue(url: str | None, storage: Storage) -> RunQueue:
    """The backend for ``url``: none or a database URL selects the database queue."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower() if url else None
    if scheme is None or scheme in _DATABASE_SCHEMES:
        return DatabaseQueue(storage)
    raise ConfigurationError(
        f"queue.url scheme {scheme!r} is not supported; use a database URL or leave it empty"
    )
