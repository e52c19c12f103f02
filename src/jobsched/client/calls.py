"""The requests of every endpoint, built once for the sync and the async client."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Id = str | uuid.UUID


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def with_cursor(self, cursor: str | None, page_size: int | None) -> Call:
        params = dict(self.params)
        if cursor is not None:
            params["cursor"] = cursor
        if page_size is not None:
            params["limit"] = page_size
        return Call(self.method, self.path, params, self.body, self.headers)


def idempotency(key: str | None) -> dict[str, str]:
    """The ``Idempotency-Key`` header: repeats with the same key get the first answer."""
    return {"Idempotency-Key": key} if key is not None else {}


def query(**values: object) -> dict[str, Any]:
    """Query parameters, leaving out those not given; times in ISO 8601."""
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in values.items()
        if value is not None
    }


def job_body(body: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A ``POST /jobs`` or ``PATCH /jobs/{id}`` body: ``body``'s fields, then ``fields``."""
    return {**(body or {}), **fields}


def page_size_for(limit: int | None, page_size: int | None) -> int | None:
    """Ask for no more than the caller wants in all: a small ``limit`` is one small page."""
    if limit is None:
        return page_size
    return min(limit, page_size) if page_size is not None else min(limit, 50)


def job_path(job_id: Id, action: str = "") -> str:
    return f"/jobs/{job_id}" + (f"/{action}" if action else "")


def run_path(run_id: Id, action: str = "") -> str:
    return f"/runs/{run_id}" + (f"/{action}" if action else "")
