"""``jobsched.enqueue``: a run due now, written inside the application's own transaction.

    with psycopg.connect(url) as connection:      # the application's transaction
        connection.execute("INSERT INTO orders ...")
        jobsched.enqueue(connection, "emails.receipt", {"order": 42})
    # committed together: the run exists if and only if the order does

The job (one-time, already fired: ``completed``) and its run (``queued``, due now)
are two INSERTs in the caller's transaction (an autocommit connection gets a
transaction of their own), which the caller commits or rolls back: a rollback leaves
nothing; at commit the run is visible to workers of the database queue at once
(the ``jobsched_runs`` NOTIFY wakes them), and to the outbox for Redis and
RabbitMQ. Values are checked as the API checks them, before anything is written.
With ``idempotency_key``, a second enqueue with that key (in any transaction)
returns the first one's run instead of making another: the key is a unique key in
the database, so concurrent transactions cannot both insert it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.types.json import Jsonb
from sqlalchemy.ext.asyncio import AsyncConnection as SAAsyncConnection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from jobsched.core.errors import InvalidInputError
from jobsched.core.ids import new_id
from jobsched.core.models import RetryPolicy

_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
_PRIORITY_LIMIT = 100
IDEMPOTENCY_SCOPE = "enqueue"


@dataclass(frozen=True, slots=True)
class Enqueued:
    job_id: uuid.UUID
    run_id: uuid.UUID
    # True when an earlier enqueue with the same idempotency_key made this run.
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class _Row:
    job: dict[str, Any]
    run: dict[str, Any]
    request_hash: str


def _check(
    type_name: str,
    /,
    payload: Mapping[str, Any] | None,
    *,
    queue: str,
    priority: int,
    timeout_seconds: float | None,
    retry: Mapping[str, Any] | None,
) -> tuple[dict[str, Any], RetryPolicy]:
    if not isinstance(type_name, str) or not _NAME.match(type_name):
        raise InvalidInputError("type", "1-200 characters of A-Z a-z 0-9 _ . : -")
    if not isinstance(queue, str) or not _NAME.match(queue):
        raise InvalidInputError("queue", "1-200 characters of A-Z a-z 0-9 _ . : -")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidInputError("priority", "must be an integer")
    if not -_PRIORITY_LIMIT <= priority <= _PRIORITY_LIMIT:
        raise InvalidInputError("priority", f"must be between -{_PRIORITY_LIMIT} and 100")
    if timeout_seconds is not None and not timeout_seconds > 0:
        raise InvalidInputError("timeout_seconds", "must be greater than 0")
    body = dict(payload or {})
    try:
        json.dumps(body)
    except (TypeError, ValueError) as error:
        raise InvalidInputError("payload", f"must be JSON: {error}") from error
    try:
        policy = RetryPolicy.from_json({**RetryPolicy().to_json(), **dict(retry or {})})
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidInputError("retry", str(error)) from error
    if policy.max_attempts < 1 or policy.backoff not in ("fixed", "exponential"):
        raise InvalidInputError("retry", "max_attempts >= 1, backoff fixed or exponential")
    return body, policy


def _row(
    type_name: str,
    payload: Mapping[str, Any] | None,
    *,
    queue: str,
    priority: int,
    timeout_seconds: float | None,
    retry: Mapping[str, Any] | None,
) -> _Row:
    body, policy = _check(
        type_name, payload, queue=queue, priority=priority,
        timeout_seconds=timeout_seconds, retry=retry,
    )  # fmt: skip
    job_id, run_id = new_id(), new_id()
    shared = {
        "type": type_name,
        "payload": Jsonb(body),
        "queue": queue,
        "priority": priority,
        "timeout_seconds": timeout_seconds,
        "retry": Jsonb(policy.to_json()),
    }
    request = {"type": type_name, "payload": body, "queue": queue, "priority": priority,
               "timeout_seconds": timeout_seconds, "retry": policy.to_json()}  # fmt: skip
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    return _Row({"id": job_id, **shared}, {"id": run_id, "job_id": job_id, **shared}, digest)


_INSERT_JOB = """
INSERT INTO jobs (id, name, type, schedule, timezone, run_at, payload, queue, priority,
    timeout_seconds, retry, status, next_run_at, schedule_anchor_at, last_fired_at,
    created_at, updated_at, misfire_policy, misfire_grace_seconds, concurrency_policy)
VALUES (%(id)s, NULL, %(type)s, NULL, 'UTC', now(), %(payload)s, %(queue)s, %(priority)s,
    %(timeout_seconds)s, %(retry)s, 'completed', NULL, now(), now(), now(), now(),
    'coalesce', NULL, 'allow')
"""
_INSERT_RUN = """
INSERT INTO runs (id, job_id, job_type, queue, priority, payload, timeout_seconds, retry,
    scheduled_for, trigger, status, attempt, not_before, published_at, created_at, updated_at)
VALUES (%(id)s, %(job_id)s, %(type)s, %(queue)s, %(priority)s, %(payload)s,
    %(timeout_seconds)s, %(retry)s, now(), 'schedule', 'queued', 0, now(), NULL, now(), now())
"""
_FORGET_EXPIRED_KEY = (
    "DELETE FROM idempotency_keys WHERE scope = %(scope)s AND key = %(key)s AND expires_at <= now()"
)
_CLAIM_KEY = """
INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response_body,
    location, created_at, expires_at)
VALUES (%(scope)s, %(key)s, %(hash)s, 201, %(body)s, NULL, now(),
    now() + interval '24 hours')
ON CONFLICT (scope, key) DO NOTHING
RETURNING key
"""
_READ_KEY = (
    "SELECT request_hash, response_body FROM idempotency_keys "
    "WHERE scope = %(scope)s AND key = %(key)s"
)


def enqueue_many(target: SyncConnection, items: Sequence[Mapping[str, Any]]) -> list[Enqueued]:
    """``enqueue`` of each item (its keyword arguments: ``type``, ``payload``, ``queue``...)
    in the one transaction of ``target``; all are checked before any is written."""
    for item in items:
        _check_item(item)
    return [enqueue(target, **item) for item in items]


def _check_item(item: Mapping[str, Any]) -> None:
    given = dict(item)
    given.pop("idempotency_key", None)
    type_name = given.pop("type", None)
    if type_name is None:
        raise InvalidInputError("type", "is required")
    defaults: dict[str, Any] = {
        "payload": None,
        "queue": "default",
        "priority": 0,
        "timeout_seconds": 3600.0,
        "retry": None,
    }
    _row(type_name, **{**defaults, **given})


def _key_params(row: _Row, key: str) -> dict[str, Any]:
    body = {"job_id": str(row.job["id"]), "run_id": str(row.run["id"])}
    return {"scope": IDEMPOTENCY_SCOPE, "key": key, "hash": row.request_hash, "body": Jsonb(body)}


def _earlier(row: _Row, found: tuple[Any, ...] | None) -> Enqueued:
    if found is None:  # pragma: no cover - the key's row is locked by the conflict
        raise InvalidInputError("idempotency_key", "was released meanwhile; enqueue again")
    request_hash, body = found
    if request_hash != row.request_hash:
        raise InvalidInputError(
            "idempotency_key", "was used before with other values; use a new key"
        )
    return Enqueued(uuid.UUID(body["job_id"]), uuid.UUID(body["run_id"]), replayed=True)


SyncConnection = psycopg.Connection[Any] | sa.Connection | Session
AsyncConnection = psycopg.AsyncConnection[Any] | SAAsyncConnection | AsyncSession
_WANTED = "a psycopg 3 connection, or a SQLAlchemy Connection or Session on postgresql+psycopg"


def _driver(connection: SyncConnection) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy one, in the transaction SQLAlchemy owns."""
    if isinstance(connection, psycopg.Connection):
        return connection
    if isinstance(connection, Session):
        connection = connection.connection()
    if isinstance(connection, sa.Connection):
        if not connection.in_transaction():
            connection.begin()
        driver = connection.connection.driver_connection
        if isinstance(driver, psycopg.Connection):
            return driver
    raise TypeError(f"enqueue needs {_WANTED}, not {type(connection).__name__}")


async def _async_driver(connection: AsyncConnection) -> psycopg.AsyncConnection[Any]:
    if isinstance(connection, psycopg.AsyncConnection):
        return connection
    if isinstance(connection, AsyncSession):
        connection = await connection.connection()
    if isinstance(connection, SAAsyncConnection):
        if not connection.in_transaction():
            await connection.begin()
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        if isinstance(driver, psycopg.AsyncConnection):
            return driver
    raise TypeError(f"enqueue_async needs an asyncio form of {_WANTED}")


@contextlib.asynccontextmanager
async def _no_transaction() -> AsyncIterator[None]:
    yield


def enqueue(
    target: SyncConnection,
    type: str,
    payload: Mapping[str, Any] | None = None,
    *,
    queue: str = "default",
    priority: int = 0,
    timeout_seconds: float | None = 3600.0,
    retry: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Enqueued:
    """A run of handler ``type`` due now, in ``target``'s current transaction."""
    connection = _driver(target)
    row = _row(type, payload, queue=queue, priority=priority,
               timeout_seconds=timeout_seconds, retry=retry)  # fmt: skip
    # In the caller's transaction (psycopg starts one at the first statement); only an
    # autocommit connection gets a transaction of its own, so job and run go together.
    own = connection.transaction() if connection.autocommit else contextlib.nullcontext()
    with own, connection.cursor() as cursor:
        if idempotency_key is not None:
            params = _key_params(row, idempotency_key)
            cursor.execute(_FORGET_EXPIRED_KEY, params)
            if cursor.execute(_CLAIM_KEY, params).fetchone() is None:
                return _earlier(row, cursor.execute(_READ_KEY, params).fetchone())
        cursor.execute(_INSERT_JOB, row.job)
        cursor.execute(_INSERT_RUN, row.run)
    return Enqueued(row.job["id"], row.run["id"])


async def enqueue_async(
    target: AsyncConnection,
    type: str,
    payload: Mapping[str, Any] | None = None,
    *,
    queue: str = "default",
    priority: int = 0,
    timeout_seconds: float | None = 3600.0,
    retry: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Enqueued:
    """``enqueue`` on an asyncio connection (psycopg, or SQLAlchemy's on psycopg)."""
    connection = await _async_driver(target)
    row = _row(type, payload, queue=queue, priority=priority,
               timeout_seconds=timeout_seconds, retry=retry)  # fmt: skip
    own = connection.transaction() if connection.autocommit else _no_transaction()
    async with own, connection.cursor() as cursor:
        if idempotency_key is not None:
            params = _key_params(row, idempotency_key)
            await cursor.execute(_FORGET_EXPIRED_KEY, params)
            if await (await cursor.execute(_CLAIM_KEY, params)).fetchone() is None:
                found = await (await cursor.execute(_READ_KEY, params)).fetchone()
                return _earlier(row, found)
        await cursor.execute(_INSERT_JOB, row.job)
        await cursor.execute(_INSERT_RUN, row.run)
    return Enqueued(row.job["id"], row.run["id"])
