"""The job-metadata cache in front of ``GET /jobs/{id}``: Redis, or nothing at all.

The database stays the source of truth; the cache only saves it reads. What it
promises:

- **No stale read after a successful API write.** Each entry carries its job's
  version, ``updated_at`` in integer microseconds since the epoch (storage makes
  versions only grow). ``store`` replaces an entry only with a strictly newer
  version, in one atomic Lua script, so a ``GET`` that read the job before a
  ``PATCH`` committed cannot put the old version back after the ``PATCH`` stored
  the new one. A deleted job leaves a tombstone that no ``store`` overwrites.
- **Bounded staleness elsewhere.** The scheduler changes ``next_run_at``,
  ``last_fired_at`` and ``status`` without telling the cache, so those may lag by
  up to the TTL; so may anything, for one TTL, after a cache write failed.
- **Another release's entries are misses.** Each entry is tagged with a digest
  of the ``Job`` fields that wrote it; an entry with other fields is never read
  as a job with a field missing or defaulted.
- **A cache failure never fails a request.** Every Redis error is logged (at most
  one warning per interval), counted, and answered from the database.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol, cast

import redis.asyncio
from pydantic import TypeAdapter
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from jobsched.config.settings import Settings
from jobsched.core.errors import ConfigurationError
from jobsched.core.models import Job
from jobsched.monitoring.metrics import CACHE_REQUESTS, CACHE_WRITE_ERRORS

logger = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Redis errors (connection, timeout, a key of the wrong type) and entries that do
# not decode (pydantic's ValidationError is a ValueError) all fall back to the database.
_CACHE_FAILURES = (RedisError, OSError, ValueError)


class JobCache(Protocol):
    """A cache of jobs by id. No method raises: a failing cache behaves as an empty one."""

    async def get(self, job_id: uuid.UUID) -> Job | None:
        """The cached job; None on a miss, for a deleted job, or when the cache fails."""

    async def store(self, job: Job) -> None:
        """Cache ``job`` unless a version at least as new (or a tombstone) is cached.

        Callers store what they read from the database on a miss, and what they
        wrote after each commit that changed the job.
        """

    async def invalidate(self, job_id: uuid.UUID) -> None:
        """Record that the job was deleted (call after the delete commits).

        Until the entry expires every ``get`` misses and every ``store`` of the
        job is refused, so a reader that loaded it before the delete cannot bring
        it back.
        """

    async def close(self) -> None: ...


class NullJobCache:
    """No cache: every lookup misses and nothing is kept (``cache.url`` unset)."""

    async def get(self, job_id: uuid.UUID) -> Job | None:
        return None

    async def store(self, job: Job) -> None:
        pass

    async def invalidate(self, job_id: uuid.UUID) -> None:
        pass

    async def close(self) -> None:
        pass


# --- (de)serialisation --------------------------------------------------------


def job_version(job: Job) -> int:
    """``updated_at`` in whole microseconds since the epoch (exact: integer arithmetic)."""
    return (job.updated_at - _EPOCH) // _MICROSECOND


# The ``Job`` dataclass is the one description of a job's fields: pydantic derives
# both directions from it, so a field added to ``Job`` is cached with no change here.
_JOB_JSON = TypeAdapter(Job)


def schema_digest(model: type[object]) -> str:
    """A short digest of ``model``'s JSON schema: it changes whenever a field does.

    Any change to a field (added, removed, renamed, retyped, a new default or enum
    member) gives a new digest, and so does an edited docstring: a harmless extra
    miss, for one TTL, after such a release.
    """
    schema = TypeAdapter(model).json_schema()
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


# Every entry starts with the digest of the ``Job`` schema that wrote it, so an
# entry another release wrote with other fields is a miss. The format lives in the
# value, not in the key, so that releases running side by side share one entry per
# job, and with it the version order and the tombstones. Until such an entry
# expires or its job changes, ``store`` (same version) leaves it in place.
_ENTRY_PREFIX = f"{schema_digest(Job)}:".encode()


def job_to_entry(job: Job) -> bytes:
    """``job`` as a cache entry: the format prefix, then every field as JSON."""
    return _ENTRY_PREFIX + _JOB_JSON.dump_json(job)


def job_from_entry(entry: bytes) -> Job | None:
    """The ``Job`` ``job_to_entry`` wrote; None for an entry in another release's format.

    ``ValueError`` for an entry in this format that does not decode.
    """
    if not entry.startswith(_ENTRY_PREFIX):
        return None
    return _JOB_JSON.validate_json(entry[len(_ENTRY_PREFIX) :])


# --- Redis --------------------------------------------------------------------

# An entry is a hash: {version, job} for a job, {deleted} for a tombstone.
#
# Store a job unless the entry is a tombstone or holds a version at least as new.
# Versions (about 1.8e15 µs today) compare exactly as Lua doubles until 2^53 µs,
# in the year 2255.
# KEYS: the job's key. ARGV: version, job entry, TTL in ms. Returns 1 if stored.
_STORE_IF_NEWER = """
if redis.call('HEXISTS', KEYS[1], 'deleted') == 1 then return 0 end
local cached = redis.call('HGET', KEYS[1], 'version')
if cached and tonumber(cached) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'job', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# Replace whatever is cached with a tombstone. KEYS: the job's key. ARGV: TTL in ms.
_TOMBSTONE = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'deleted', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""


def _described(error: Exception) -> str:
    # redis-py's repr() of its errors is a bare category ("network:ConnectionError").
    return f"{type(error).__name__}: {error}"


class ThrottledWarning:
    """Logs at most one warning per ``interval_seconds`` and counts the ones held back.

    A Redis outage fails every request's lookup; one line per interval says so.
    """

    def __init__(self, interval_seconds: float, clock: Callable[[], float]) -> None:
        self._interval_seconds = interval_seconds
        self._clock = clock
        self._last_logged_at: float | None = None
        self._held_back = 0

    def warn(self, message: str, *args: object) -> None:
        now = self._clock()
        if self._last_logged_at is not None and now - self._last_logged_at < self._interval_seconds:
            self._held_back += 1
            return
        if self._held_back:
            message += " (%d similar warnings held back)"
            args = (*args, self._held_back)
        logger.warning(message, *args)
        self._last_logged_at = now
        self._held_back = 0


class RedisJobCache:
    """Jobs cached in Redis under ``{key_prefix}:job:{id}`` for ``ttl_seconds``.

    Each operation is one round trip with a short timeout and one reconnection
    attempt (no backoff): a slow or absent Redis must cost a request little.
    Hits do not extend an entry's life, so every entry is at most
    ``ttl_seconds`` old.
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str,
        ttl_seconds: float,
        timeout_seconds: float = 0.5,
        warning_interval_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            self._redis = redis.asyncio.Redis.from_url(
                url,
                socket_timeout=timeout_seconds,
                socket_connect_timeout=timeout_seconds,
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as error:
            raise ConfigurationError(f"setting cache.url: {error}") from error
        self._key_prefix = key_prefix
        self._ttl_milliseconds = max(1, round(ttl_seconds * 1000))
        self._store_if_newer = self._redis.register_script(_STORE_IF_NEWER)
        self._tombstone = self._redis.register_script(_TOMBSTONE)
        self._warning = ThrottledWarning(warning_interval_seconds, clock)

    def key(self, job_id: uuid.UUID) -> str:
        return f"{self._key_prefix}:job:{job_id}"

    async def get(self, job_id: uuid.UUID) -> Job | None:
        try:
            # The client does not decode responses: the entry comes back as bytes.
            entry = cast(bytes | None, await self._redis.hget(self.key(job_id), "job"))
            job = None if entry is None else job_from_entry(entry)
        except _CACHE_FAILURES as error:
            CACHE_REQUESTS.labels(result="error").inc()
            self._warning.warn(
                "job cache lookup failed, reading the database: %s", _described(error)
            )
            return None
        CACHE_REQUESTS.labels(result="miss" if job is None else "hit").inc()
        return job

    async def store(self, job: Job) -> None:
        arguments: list[bytes | int] = [job_version(job), job_to_entry(job), self._ttl_milliseconds]
        try:
            await self._store_if_newer(keys=[self.key(job.id)], args=arguments)
        except _CACHE_FAILURES as error:
            CACHE_WRITE_ERRORS.labels(operation="store").inc()
            self._warning.warn(
                "job cache store failed; job %s may be served stale until its entry expires: %s",
                job.id,
                _described(error),
            )

    async def invalidate(self, job_id: uuid.UUID) -> None:
        try:
            await self._tombstone(keys=[self.key(job_id)], args=[self._ttl_milliseconds])
        except _CACHE_FAILURES as error:
            CACHE_WRITE_ERRORS.labels(operation="invalidate").inc()
            self._warning.warn(
                "job cache invalidation failed; deleted job %s may be served until its entry "
                "expires: %s",
                job_id,
                _described(error),
            )

    async def close(self) -> None:
        await self._redis.aclose()


def job_cache_from_settings(settings: Settings) -> JobCache:
    """Redis at ``cache.url``, keys under ``{queue.namespace}:cache``; no URL, no cache.

    The caller closes it. ``ConfigurationError`` for a URL Redis cannot use.
    """
    if not settings.cache.url:
        return NullJobCache()
    return RedisJobCache(
        settings.cache.url,
        key_prefix=f"{settings.queue.namespace}:cache",
        ttl_seconds=settings.cache.ttl_seconds,
    )
