"""``Idempotency-Key`` on ``POST /jobs``, ``POST /jobs/batch`` and ``POST /jobs/{id}/trigger``.

The first request with a key claims it (a unique key in the database, so of 20
concurrent repeats exactly one runs), runs, and stores its answer for
``api.idempotency_ttl_seconds``. A repeat with the same key and the same body is
answered the stored status and body with ``Idempotent-Replayed: true``; the same
key with another body is a 422 naming the header. A repeat arriving while the
first request runs waits for its answer. A request that fails frees its key.

Keys are per caller (token) and per operation: two tokens may use the same key.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from jobsched.api.dependencies import Services
from jobsched.core.access import Principal
from jobsched.core.errors import ConflictError, InvalidInputError

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# How long a repeat waits for the first request's answer before a 409.
_WAIT_SECONDS = 10.0
_WAIT_STEP_SECONDS = 0.02

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=200,
        description="Repeats with this key and body get the first answer "
        "(api.idempotency_ttl_seconds).",
    ),
]


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int
    body: BaseModel
    location: str | None = None


async def _body_hash(request: Request) -> str:
    raw = await request.body()
    try:
        canonical = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = raw.decode(errors="replace")
    return hashlib.sha256(canonical.encode()).hexdigest()


def _response(status_code: int, body: Any, location: str | None, *, replayed: bool) -> JSONResponse:
    headers = {"Location": location} if location else {}
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    return JSONResponse(body, status_code=status_code, headers=headers)


async def idempotent(
    *,
    key: str | None,
    operation: str,
    request: Request,
    principal: Principal,
    services: Services,
    work: Callable[[], Awaitable[Answer]],
) -> JSONResponse:
    """Run ``work`` once per key: the first time, or answer what it answered then."""
    if key is None:
        answer = await work()
        return _response(
            answer.status_code, answer.body.model_dump(mode="json"), answer.location, replayed=False
        )
    scope = f"{principal.token_id or principal.name} {operation}"
    request_hash = await _body_hash(request)
    storage = services.storage
    deadline = time.monotonic() + _WAIT_SECONDS
    while True:
        now = await storage.now()
        ttl = timedelta(seconds=services.settings.api.idempotency_ttl_seconds)
        stored = await storage.claim_idempotency_key(
            scope=scope, key=key, request_hash=request_hash, now=now, expires_at=now + ttl
        )
        if stored is None:
            break
        if stored.request_hash != request_hash:
            raise InvalidInputError(
                HEADER, "was used before with another request body; use a new key"
            )
        if stored.status_code is not None:
            return _response(stored.status_code, stored.body, stored.location, replayed=True)
        if time.monotonic() >= deadline:
            raise ConflictError(HEADER, "a request with this key is still in progress; retry")
        await asyncio.sleep(_WAIT_STEP_SECONDS)
    try:
        answer = await work()
    except BaseException:
        await storage.release_idempotency_key(scope=scope, key=key)
        raise
    body = answer.body.model_dump(mode="json")
    await storage.store_idempotent_answer(
        scope=scope, key=key, status_code=answer.status_code, body=body, location=answer.location
    )
    return _response(answer.status_code, body, answer.location, replayed=False)
