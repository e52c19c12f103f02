"""The API's answers as typed records: the fields of ``GET /jobs/{id}``, ``/runs/{id}``...

They mirror the server's response models field for field (``docs/api.md``) and
ignore fields a newer server adds, so an older client keeps working.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

RunStatus = Literal["queued", "running", "retrying", "succeeded", "dead", "cancelled", "skipped"]
FINAL_RUN_STATUSES: frozenset[str] = frozenset({"succeeded", "dead", "cancelled", "skipped"})


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    def to_json(self) -> dict[str, Any]:
        """The record as the API answered it: JSON types, RFC 3339 times."""
        return self.model_dump(mode="json")


class Retry(Record):
    max_attempts: int
    backoff: Literal["fixed", "exponential"]
    initial_delay_seconds: float
    max_delay_seconds: float
    jitter: bool


class Job(Record):
    id: uuid.UUID
    name: str | None
    type: str
    schedule: str | None
    timezone: str
    run_at: datetime | None
    payload: dict[str, Any]
    queue: str
    priority: int
    timeout_seconds: float | None
    retry: Retry
    misfire_policy: str
    misfire_grace_seconds: float | None
    concurrency_policy: str
    status: str
    next_run_at: datetime | None
    last_fired_at: datetime | None
    created_at: datetime
    updated_at: datetime


class Run(Record):
    id: uuid.UUID
    job_id: uuid.UUID
    type: str
    queue: str
    priority: int
    scheduled_for: datetime
    trigger: str
    status: RunStatus
    attempt: int
    max_attempts: int
    not_before: datetime
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_error: str | None
    result: dict[str, Any] | None
    lease_owner: str | None
    lease_expires_at: datetime | None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_RUN_STATUSES


class Attempt(Record):
    attempt: int
    status: str
    worker_id: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    result: dict[str, Any] | None
    progress: dict[str, Any] | None


class RunDetail(Run):
    """``GET /runs/{id}``: the run with its attempts and the current one's progress."""

    progress: dict[str, Any] | None
    attempts: list[Attempt]


class Worker(Record):
    id: str
    host: str
    pid: int
    queues: list[str]
    handler_types: list[str]
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    runs_in_progress: int
    status: Literal["alive", "gone"]


class SchedulePreview(Record):
    schedule: str
    timezone: str
    fire_times: list[datetime]


class Token(Record):
    id: uuid.UUID
    name: str
    role: str
    queues: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(Token):
    """The new token with its secret, ``token``: shown this once only."""

    token: str


class AuditRecord(Record):
    id: uuid.UUID
    at: datetime
    action: str
    token_id: uuid.UUID | None
    token_name: str
    target_kind: str
    target_id: str | None
    request_id: str | None
    client_address: str | None
    fields: list[str]
