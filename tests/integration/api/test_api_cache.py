"""The job-metadata cache behind ``GET /jobs/{id}``, on real Redis and real databases.

Each test keeps its Redis keys under a prefix of its own and deletes them after.
Interleavings of a reader and a writer are driven with events, never with sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import logging
import types
import typing
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pytest
import redis.asyncio
import sqlalchemy as sa
from fastapi import FastAPI
from prometheus_client import REGISTRY
from pydantic import TypeAdapter
from redis.exceptions import RedisError

from jobsched.api import create_app
from jobsched.api.cache import (
    JobCache,
    NullJobCache,
    RedisJobCache,
    job_cache_from_settings,
    job_from_entry,
    job_to_entry,
    job_version,
    schema_digest,
)
from jobsched.config.settings import Settings
from jobsched.core.errors import ConfigurationError
from jobsched.core.models import ConcurrencyPolicy, Job, JobSpec, JobStatus, RetryPolicy
from jobsched.core.planning import FirePlan
from jobsched.queue.database import DatabaseQueue
from jobsched.storage.database import SQLStorage, create_engine_for
from jobsched.storage.schema import jobs
from jobsched.storage.urls import parse_database_url
from tests.helpers import wait_until
from tests.integration.api.api_assertions import assert_problem
from tests.integration.api.conftest import BASE_URL

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

REDIS_URL = "redis://127.0.0.1:6379/0"
UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"
CACHE_LOGGER = "jobsched.api.cache"


# --- fixtures and helpers -------------------------------------------------------


@pytest.fixture
async def redis_client() -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def key_prefix(redis_client: redis.asyncio.Redis) -> AsyncIterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"jobsched-test-cache-{uuid.uuid4().hex}"
    yield prefix
    # Tidiness only: every entry expires by itself, and other suites restart the
    # shared Redis, which must not turn a passed test into an error.
    with contextlib.suppress(RedisError):
        keys = [key async for key in redis_client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await redis_client.delete(*keys)


@pytest.fixture
async def job_cache(key_prefix: str) -> AsyncIterator[RedisJobCache]:
    cache = RedisJobCache(REDIS_URL, key_prefix=key_prefix, ttl_seconds=60)
    yield cache
    await cache.close()


@pytest.fixture
def app(storage: SQLStorage, queue: DatabaseQueue, job_cache: RedisJobCache) -> FastAPI:
    """Replaces the package's ``app``: the ``api`` client talks to an app with a cache."""
    return create_app(storage, queue, Settings(), cache=job_cache)


@asynccontextmanager
async def client_of(storage: SQLStorage, cache: JobCache) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(storage, DatabaseQueue(storage), Settings(), cache=cache)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


def rename_behind_the_api(sql: sa.Engine, job_id: str, name: str) -> None:
    with sql.begin() as connection:
        connection.execute(sa.update(jobs).where(jobs.c.id == uuid.UUID(job_id)).values(name=name))


def cache_lookups(result: str) -> float:
    return REGISTRY.get_sample_value("api_cache_requests_total", {"result": result}) or 0.0


def cache_write_errors(operation: str) -> float:
    value = REGISTRY.get_sample_value("api_cache_write_errors_total", {"operation": operation})
    return value or 0.0


async def create_job(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await api.post("/jobs", json={"type": "noop", **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def a_job(**overrides: Any) -> Job:
    """A job with every optional field set, microseconds in every timestamp."""
    at = datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    job = Job(
        id=uuid.UUID("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
        name="nightly-report",
        type="http",
        schedule="*/5 * * * *",
        timezone="Europe/Berlin",
        run_at=at + timedelta(days=1, microseconds=1),
        payload={"url": "http://x", "n": [1, 2.5, None, True], "ü": {"deep": "☃"}},
        queue="reports",
        priority=-7,
        timeout_seconds=12.5,
        retry=RetryPolicy(max_attempts=9, backoff="fixed", initial_delay_seconds=0.25),
        status=JobStatus.PAUSED,
        next_run_at=at + timedelta(minutes=5),
        schedule_anchor_at=at - timedelta(hours=1),
        last_fired_at=at - timedelta(microseconds=999999),
        created_at=at - timedelta(days=2),
        updated_at=at,
    )
    return dataclasses.replace(job, **overrides)


class HeldReadStorage(SQLStorage):
    """``get_job`` can be held after it read the row, to let a writer in before it returns."""

    def __init__(self, database_url: str) -> None:
        super().__init__(create_engine_for(parse_database_url(database_url)))
        self.hold_next_read = False
        self.read_done = asyncio.Event()
        self.release_read = asyncio.Event()

    async def get_job(self, job_id: uuid.UUID) -> Job:
        job = await super().get_job(job_id)
        if self.hold_next_read:
            self.hold_next_read = False
            self.read_done.set()
            await self.release_read.wait()
        return job


@pytest.fixture
async def held_storage(database_url: str) -> AsyncIterator[HeldReadStorage]:
    store = HeldReadStorage(database_url)
    yield store
    await store.close()


async def read_held_across(
    storage: HeldReadStorage, api: httpx.AsyncClient, job_id: str
) -> asyncio.Task[httpx.Response]:
    """Start a GET that misses the cache and stop it right after its database read."""
    storage.hold_next_read = True
    reader = asyncio.create_task(api.get(f"/jobs/{job_id}"))
    await asyncio.wait_for(storage.read_done.wait(), timeout=10)
    return reader


# --- serialisation and the version rule ---------------------------------------


@pytest.mark.parametrize(
    "job",
    [
        a_job(),
        a_job(name=None, schedule=None, run_at=None, next_run_at=None, last_fired_at=None),
        a_job(timeout_seconds=None, payload={}, status=JobStatus.COMPLETED),
    ],
)
def test_a_job_round_trips_through_an_entry_exactly(job: Job) -> None:
    decoded = job_from_entry(job_to_entry(job))

    assert decoded == job
    assert decoded is not None
    assert decoded.updated_at.utcoffset() == timedelta(0)


def distinct_value(annotation: Any, default: Any, seed: int) -> Any:
    """A value of type ``annotation``, never None nor ``default``, and different for each seed.

    Raises for a type it does not know, so that a new kind of ``Job`` field makes
    the round-trip test below fail until it is taught a value for it.
    """
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        set_type = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
        return distinct_value(set_type, default, seed)
    if origin is typing.Literal:
        return next(arg for arg in reversed(typing.get_args(annotation)) if arg != default)
    if origin is dict:
        return {"seed": seed, "nested": [seed, None, True]}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return next(member for member in reversed(annotation) if member != default)
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return every_field_set(annotation)
    simple_values: dict[Any, Any] = {
        uuid.UUID: uuid.UUID(int=seed + 1),
        str: f"value-{seed}",
        bool: default is not True,
        int: 1000 + seed,
        float: 1000.25 + seed,
        datetime: datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
        + timedelta(days=seed, microseconds=seed),
    }
    if annotation in simple_values:
        return simple_values[annotation]
    raise TypeError(f"distinct_value() has no value for {annotation!r}: add one")


def default_of(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default  # dataclasses.MISSING when the field has no default


RecordT = TypeVar("RecordT", bound="DataclassInstance")


def every_field_set(record_type: type[RecordT]) -> RecordT:
    """A ``record_type`` whose every field is set, to a value unlike its default and its peers."""
    hints = typing.get_type_hints(record_type)
    values = {
        field.name: distinct_value(hints[field.name], default_of(field), seed)
        for seed, field in enumerate(dataclasses.fields(record_type))
    }
    return record_type(**values)


async def test_every_job_field_survives_a_round_trip_through_redis(
    job_cache: RedisJobCache,
) -> None:
    job = every_field_set(Job)
    for field in dataclasses.fields(Job):
        assert getattr(job, field.name) not in (None, default_of(field)), field.name

    await job_cache.store(job)
    cached = await job_cache.get(job.id)

    assert cached is not None
    for field in dataclasses.fields(Job):
        assert getattr(cached, field.name) == getattr(job, field.name), field.name
    assert cached == job


@pytest.mark.parametrize(
    "prefix", [b"", b"0123456789abcdef:"], ids=["untagged", "other-job-fields"]
)
async def test_an_entry_in_another_format_is_a_miss_not_a_misread(
    job_cache: RedisJobCache, redis_client: redis.asyncio.Redis, prefix: bytes
) -> None:
    """An entry written by a release whose ``Job`` lacked a field, now set to a non-default."""
    job = a_job(concurrency_policy=ConcurrencyPolicy.FORBID)
    fields_of_that_release = TypeAdapter(Job).dump_python(job, mode="json")
    del fields_of_that_release["concurrency_policy"]
    entry = prefix + json.dumps(fields_of_that_release).encode()
    await redis_client.hset(
        job_cache.key(job.id), mapping={"version": job_version(job), "job": entry}
    )
    misses, errors = cache_lookups("miss"), cache_lookups("error")

    assert await job_cache.get(job.id) is None
    assert (cache_lookups("miss"), cache_lookups("error")) == (misses + 1, errors)

    newer = dataclasses.replace(job, updated_at=job.updated_at + timedelta(microseconds=1))
    await job_cache.store(newer)
    assert await job_cache.get(job.id) == newer


def a_job_type_like(*extra_fields: tuple[str, Any, Any]) -> type:
    """A dataclass named ``Job`` with ``Job``'s fields and defaults, then ``extra_fields``."""
    hints = typing.get_type_hints(Job)
    fields = [
        (
            field.name,
            hints[field.name],
            dataclasses.field(default=field.default, default_factory=field.default_factory),
        )
        for field in dataclasses.fields(Job)
    ]
    return dataclasses.make_dataclass("Job", [*fields, *extra_fields], frozen=True)


def test_the_entry_format_follows_the_job_fields() -> None:
    """Another process with the same fields reads this one's entries; one more field, none."""
    tags: tuple[str, Any, Any] = ("tags", list[str], dataclasses.field(default_factory=list))

    assert schema_digest(a_job_type_like()) == schema_digest(Job)
    assert schema_digest(a_job_type_like(tags)) != schema_digest(Job)


def test_the_version_is_updated_at_in_whole_microseconds() -> None:
    at = datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    later = at + timedelta(microseconds=1)

    assert job_version(a_job(updated_at=at)) == int(at.timestamp()) * 1_000_000 + 891011
    assert job_version(a_job(updated_at=later)) == job_version(a_job(updated_at=at)) + 1


async def test_store_keeps_the_newest_version_whatever_the_order(job_cache: RedisJobCache) -> None:
    old = a_job()
    new = a_job(name="renamed", updated_at=old.updated_at + timedelta(microseconds=1))
    same_version_other_content = dataclasses.replace(new, name="impostor")

    await job_cache.store(new)
    await job_cache.store(old)
    await job_cache.store(same_version_other_content)
    assert await job_cache.get(new.id) == new

    other = a_job(id=uuid.uuid4())
    newer_other = dataclasses.replace(other, updated_at=other.updated_at + timedelta(seconds=1))
    await job_cache.store(other)
    await job_cache.store(newer_other)
    assert await job_cache.get(other.id) == newer_other


async def test_a_tombstone_misses_and_refuses_every_store(job_cache: RedisJobCache) -> None:
    job = a_job()
    await job_cache.store(job)

    await job_cache.invalidate(job.id)
    await job_cache.store(dataclasses.replace(job, updated_at=job.updated_at + timedelta(days=1)))

    assert await job_cache.get(job.id) is None


# --- through the API -----------------------------------------------------------


async def test_a_hit_is_served_without_reading_the_database(
    api: httpx.AsyncClient, storage: SQLStorage, job_cache: RedisJobCache, sql: sa.Engine
) -> None:
    created = await create_job(api, name="original", schedule="@daily")
    misses, hits = cache_lookups("miss"), cache_lookups("hit")
    assert (await api.get(f"/jobs/{created['id']}")).json() == created
    assert cache_lookups("miss") == misses + 1
    # What storage reads comes back from the cache unchanged.
    assert await job_cache.get(uuid.UUID(created["id"])) == await storage.get_job(
        uuid.UUID(created["id"])
    )

    rename_behind_the_api(sql, created["id"], "changed-behind-the-cache")
    cached = await api.get(f"/jobs/{created['id']}")
    assert cached.json()["name"] == "original"
    assert cache_lookups("hit") == hits + 2

    patched = await api.patch(f"/jobs/{created['id']}", json={"name": "patched"})
    assert patched.status_code == 200, patched.text
    after = await api.get(f"/jobs/{created['id']}")
    assert after.json() == patched.json()
    assert after.json()["name"] == "patched"


async def test_pause_and_resume_are_seen_at_once(api: httpx.AsyncClient, sql: sa.Engine) -> None:
    created = await create_job(api, schedule="@every 1h")
    path = f"/jobs/{created['id']}"
    assert (await api.get(path)).status_code == 200  # now cached
    rename_behind_the_api(sql, created["id"], "only-in-the-database")

    for action, status in (("pause", "paused"), ("resume", "active")):
        changed = await api.post(f"{path}/{action}")
        assert changed.status_code == 200, changed.text
        assert changed.json()["status"] == status

        seen = (await api.get(path)).json()
        assert seen == changed.json()
        assert seen["name"] == "only-in-the-database"  # the stored job came from the database


async def test_a_deleted_job_is_not_found_even_when_it_was_cached(
    api: httpx.AsyncClient, storage: SQLStorage, job_cache: RedisJobCache
) -> None:
    created = await create_job(api)
    path = f"/jobs/{created['id']}"
    assert (await api.get(path)).status_code == 200  # now cached
    read_before_the_delete = await storage.get_job(uuid.UUID(created["id"]))

    assert (await api.delete(path)).status_code == 204
    assert_problem(await api.get(path), 404, "id")

    # A reader that loaded the job before the delete stores it afterwards: refused.
    await job_cache.store(read_before_the_delete)
    assert_problem(await api.get(path), 404, "id")


async def test_a_reader_that_read_before_a_patch_cannot_put_the_old_version_back(
    held_storage: HeldReadStorage, job_cache: RedisJobCache
) -> None:
    async with client_of(held_storage, job_cache) as api:
        created = await create_job(api, name="old")
        reader = await read_held_across(held_storage, api, created["id"])

        patched = await api.patch(f"/jobs/{created['id']}", json={"name": "new"})
        assert patched.status_code == 200, patched.text
        held_storage.release_read.set()
        # The reader answers what it read (it began before the write) and stores it late.
        assert (await reader).json()["name"] == "old"

        after = await api.get(f"/jobs/{created['id']}")
        assert after.json() == patched.json()


async def test_a_reader_that_read_before_a_delete_cannot_bring_the_job_back(
    held_storage: HeldReadStorage, job_cache: RedisJobCache
) -> None:
    async with client_of(held_storage, job_cache) as api:
        created = await create_job(api)
        reader = await read_held_across(held_storage, api, created["id"])

        assert (await api.delete(f"/jobs/{created['id']}")).status_code == 204
        held_storage.release_read.set()
        assert (await reader).status_code == 200

        assert_problem(await api.get(f"/jobs/{created['id']}"), 404, "id")


class PinnedClockStorage(SQLStorage):
    """``now()`` answers ``pinned_now`` when set: a writer whose clock was read early."""

    def __init__(self, database_url: str) -> None:
        super().__init__(create_engine_for(parse_database_url(database_url)))
        self.pinned_now: datetime | None = None

    async def now(self) -> datetime:
        return self.pinned_now if self.pinned_now is not None else await super().now()


async def test_a_write_whose_clock_was_read_before_another_commit_still_wins(
    database_url: str, job_cache: RedisJobCache
) -> None:
    """Two PATCHes: A reads its clock, B commits a later one, then A commits last."""
    storage = PinnedClockStorage(database_url)
    try:
        async with client_of(storage, job_cache) as api:
            created = await create_job(api, name="created")
            path = f"/jobs/{created['id']}"
            b = (await api.patch(path, json={"name": "b"})).json()
            storage.pinned_now = datetime.fromisoformat(b["updated_at"]) - timedelta(seconds=1)

            a = await api.patch(path, json={"name": "a"})

            assert a.status_code == 200, a.text
            assert datetime.fromisoformat(a.json()["updated_at"]) > datetime.fromisoformat(
                b["updated_at"]
            )
            assert (await api.get(path)).json() == a.json()
            assert (await storage.get_job(uuid.UUID(created["id"]))).name == "a"
    finally:
        await storage.close()


async def test_a_scheduler_write_never_moves_the_version_back(storage: SQLStorage) -> None:
    """The cache's version rule needs it: a tick's ``now`` may predate a later API write."""
    now = await storage.now()
    job = await storage.create_job(
        JobSpec(type="noop", payload={}, schedule="@every 1h"),
        next_run_at=now - timedelta(hours=1),
        now=now,
    )
    tick_clock_read_earlier = now - timedelta(minutes=30)

    await storage.fire_due_jobs(
        tick_clock_read_earlier,
        10,
        lambda _job: FirePlan([], now + timedelta(hours=1)),
        published=True,
    )

    fired = await storage.get_job(job.id)
    assert fired.next_run_at == now + timedelta(hours=1)
    assert fired.updated_at == now + timedelta(microseconds=1)


async def test_an_entry_expires_after_the_ttl(
    storage: SQLStorage, key_prefix: str, redis_client: redis.asyncio.Redis, sql: sa.Engine
) -> None:
    ttl_seconds = 2.0
    cache = RedisJobCache(REDIS_URL, key_prefix=key_prefix, ttl_seconds=ttl_seconds)
    try:
        async with client_of(storage, cache) as api:
            created = await create_job(api, name="before")
            path = f"/jobs/{created['id']}"
            assert (await api.get(path)).status_code == 200  # now cached
            entry_ttl_ms = await redis_client.pttl(cache.key(uuid.UUID(created["id"])))
            assert 0 < entry_ttl_ms <= ttl_seconds * 1000

            rename_behind_the_api(sql, created["id"], "after")
            assert (await api.get(path)).json()["name"] == "before"

            async def database_value_served() -> bool:
                return bool((await api.get(path)).json()["name"] == "after")

            await wait_until(database_value_served, timeout_seconds=ttl_seconds + 8)
    finally:
        await cache.close()


async def test_requests_succeed_from_the_database_when_redis_is_unreachable(
    storage: SQLStorage, caplog: pytest.LogCaptureFixture
) -> None:
    clock_seconds = [1000.0]
    cache = RedisJobCache(
        UNREACHABLE_REDIS_URL,
        key_prefix="unreachable",
        ttl_seconds=60,
        warning_interval_seconds=30,
        clock=lambda: clock_seconds[0],
    )
    errors = cache_lookups("error")
    store_errors, invalidate_errors = cache_write_errors("store"), cache_write_errors("invalidate")
    caplog.set_level(logging.WARNING, logger=CACHE_LOGGER)
    try:
        async with client_of(storage, cache) as api:
            created = await create_job(api, name="first")
            path = f"/jobs/{created['id']}"
            assert (await api.get(path)).json() == created
            patched = await api.patch(path, json={"name": "second"})
            assert patched.status_code == 200, patched.text
            assert (await api.get(path)).json() == patched.json()
            assert (await api.post(f"{path}/pause")).json()["status"] == "paused"
            assert (await api.delete(path)).status_code == 204
            assert_problem(await api.get(path), 404, "id")

            assert cache_lookups("error") == errors + 3
            # GET (miss) twice, PATCH, pause; then DELETE's tombstone.
            assert cache_write_errors("store") == store_errors + 4
            assert cache_write_errors("invalidate") == invalidate_errors + 1
            warnings = [r for r in caplog.records if r.name == CACHE_LOGGER]
            assert len(warnings) == 1  # one line per interval, not one per request

            clock_seconds[0] += 30
            assert_problem(await api.get(path), 404, "id")
            warnings = [r for r in caplog.records if r.name == CACHE_LOGGER]
            assert len(warnings) == 2
            assert "7 similar warnings held back" in warnings[1].getMessage()
    finally:
        await cache.close()


# --- configuration ------------------------------------------------------------------


async def test_the_cache_comes_from_the_settings() -> None:
    assert isinstance(job_cache_from_settings(Settings()), NullJobCache)

    settings = Settings.model_validate(
        {"cache": {"url": REDIS_URL, "ttl_seconds": 5}, "queue": {"namespace": "deploy-a"}}
    )
    cache = job_cache_from_settings(settings)
    try:
        assert isinstance(cache, RedisJobCache)
        assert cache.key(uuid.UUID(int=1)) == f"deploy-a:cache:job:{uuid.UUID(int=1)}"
    finally:
        await cache.close()

    with pytest.raises(ConfigurationError, match=r"cache\.url"):
        job_cache_from_settings(Settings.model_validate({"cache": {"url": "http://nope"}}))
