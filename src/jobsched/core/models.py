"""The job, run and attempt records every part of jobsched speaks in.

These are plain frozen dataclasses: storage builds them from rows, services pass
them around, the API turns them into JSON. They carry no behaviour that needs I/O.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeVar

JsonObject = dict[str, Any]
T = TypeVar("T")


class JobStatus(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"
    # The fire time was not run, by the job's concurrency policy (see last_error).
    SKIPPED = "skipped"

    @property
    def is_final(self) -> bool:
        return self in FINAL_RUN_STATUSES


FINAL_RUN_STATUSES = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.DEAD, RunStatus.CANCELLED, RunStatus.SKIPPED}
)
ACTIVE_RUN_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.RETRYING})
CLAIMABLE_RUN_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.RETRYING})


class AttemptStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    LOST = "lost"  # the worker's lease expired before it reported an outcome
    CANCELLED = "cancelled"


class MisfirePolicy(enum.StrEnum):
    """What a job does with fire times missed by more than its grace (scheduler down)."""

    COALESCE = "coalesce"  # one run stands for all of them
    ALL = "all"  # a run for each, up to the scheduler's catch-up cap
    SKIP = "skip"  # none; carry on from the next fire time


class ConcurrencyPolicy(enum.StrEnum):
    """What a fire does while an earlier run of the job is still queued or running."""

    ALLOW = "allow"  # run alongside
    FORBID = "forbid"  # skip this fire, recorded as a skipped run
    REPLACE = "replace"  # cancel the earlier run, run this one


class RunTrigger(enum.StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"


BackoffKind = Literal["fixed", "exponential"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed run is retried. ``max_attempts`` counts the first try."""

    max_attempts: int = 3
    backoff: BackoffKind = "exponential"
    initial_delay_seconds: float = 1.0
    max_delay_seconds: float = 300.0
    jitter: bool = True

    def to_json(self) -> JsonObject:
        return {
            "max_attempts": self.max_attempts,
            "backoff": self.backoff,
            "initial_delay_seconds": self.initial_delay_seconds,
            "max_delay_seconds": self.max_delay_seconds,
            "jitter": self.jitter,
        }

    @classmethod
    def from_json(cls, data: JsonObject) -> RetryPolicy:
        return cls(
            max_attempts=int(data["max_attempts"]),
            backoff=data["backoff"],
            initial_delay_seconds=float(data["initial_delay_seconds"]),
            max_delay_seconds=float(data["max_delay_seconds"]),
            jitter=bool(data["jitter"]),
        )


@dataclass(frozen=True, slots=True)
class JobSpec:
    """Everything a user chooses about a job; validated before it reaches storage."""

    type: str
    payload: JsonObject
    name: str | None = None
    schedule: str | None = None
    timezone: str = "UTC"
    run_at: datetime | None = None
    queue: str = "default"
    priority: int = 0
    timeout_seconds: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    misfire_policy: MisfirePolicy = MisfirePolicy.COALESCE
    # None: the scheduler's default (scheduler.misfire_grace_seconds).
    misfire_grace_seconds: float | None = None
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.ALLOW


@dataclass(frozen=True, slots=True)
class Job:
    id: uuid.UUID
    name: str | None
    type: str
    schedule: str | None
    timezone: str
    run_at: datetime | None
    payload: JsonObject
    queue: str
    priority: int
    timeout_seconds: float | None
    retry: RetryPolicy
    status: JobStatus
    next_run_at: datetime | None
    schedule_anchor_at: datetime
    last_fired_at: datetime | None
    created_at: datetime
    updated_at: datetime
    misfire_policy: MisfirePolicy = MisfirePolicy.COALESCE
    misfire_grace_seconds: float | None = None
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.ALLOW


@dataclass(frozen=True, slots=True)
class Run:
    """One fire time of a job. Its job's type, payload and policies are copied at fire time."""

    id: uuid.UUID
    job_id: uuid.UUID
    job_type: str
    queue: str
    priority: int
    payload: JsonObject
    timeout_seconds: float | None
    retry: RetryPolicy
    scheduled_for: datetime
    trigger: RunTrigger
    status: RunStatus
    attempt: int
    not_before: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    published_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_error: str | None
    result: JsonObject | None


class Deliverable(Protocol):
    """What a queue needs to deliver a run: which run, on which queue, how urgently."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def queue(self) -> str: ...

    @property
    def priority(self) -> int: ...


@dataclass(frozen=True, slots=True)
class OutboxRun:
    """A committed, unpublished run as the outbox sweep reads it: what publishing needs.

    A ``Deliverable``; ``scheduled_for`` says which fire time it stands for.
    """

    id: uuid.UUID
    queue: str
    priority: int
    scheduled_for: datetime


@dataclass(frozen=True, slots=True)
class Attempt:
    id: uuid.UUID
    run_id: uuid.UUID
    attempt: int
    status: AttemptStatus
    worker_id: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    result: JsonObject | None
    # The handler's latest report as of the worker's last heartbeat (None: none yet).
    # Last, with a default, so that positional construction stays valid.
    progress: JsonObject | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None
