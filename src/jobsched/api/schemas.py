"""The JSON the REST API reads and writes, as pydantic models.

Request models forbid unknown fields and coerce nothing (``strict``): ``"5"`` is
not a priority and ``1`` is not ``true``. Schedules, timezones and ``run_at`` are
checked by ``jobsched.schedules`` in ``api.job_changes``, so the API, the CLI and
the scheduler agree on what they mean. Response models are built from the core
records by their ``from_*`` constructors; datetimes serialise as RFC 3339 UTC.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobsched.core.models import (
    Attempt,
    AttemptStatus,
    ConcurrencyPolicy,
    Job,
    JobStatus,
    MisfirePolicy,
    RetryPolicy,
    Run,
    RunStatus,
    RunTrigger,
)
from jobsched.core.redaction import DEFAULT_REDACTION, HeaderRedaction, redact_headers
from jobsched.storage.base import WorkerRecord

NAME_PATTERN = r"^[A-Za-z0-9_.:-]+$"
PRIORITY_MIN = -100
PRIORITY_MAX = 100

JobName = Annotated[str, Field(min_length=1, max_length=200)]
TypeName = Annotated[str, Field(min_length=1, max_length=200, pattern=NAME_PATTERN)]
QueueName = Annotated[str, Field(min_length=1, max_length=200, pattern=NAME_PATTERN)]
ScheduleText = Annotated[str, Field(min_length=1, max_length=200)]
TimezoneName = Annotated[str, Field(min_length=1, max_length=64)]
RunAtText = Annotated[str, Field(max_length=64, json_schema_extra={"format": "date-time"})]
Priority = Annotated[int, Field(ge=PRIORITY_MIN, le=PRIORITY_MAX)]
# Durations are capped at ten years: a larger one would overflow the datetimes the
# scheduler and workers compute from it (a retry's due time, a misfire deadline).
SECONDS_MAX = 10 * 365 * 86400
TimeoutSeconds = Annotated[float, Field(gt=0, le=SECONDS_MAX)]
MisfireGraceSeconds = Annotated[float, Field(ge=0, le=SECONDS_MAX)]
DelaySeconds = Annotated[float, Field(ge=0, le=SECONDS_MAX)]
Payload = dict[str, Any]
# Strict mode takes only enum instances when validating Python objects, and FastAPI
# validates the decoded JSON body as Python objects: the enum fields take their JSON
# strings (and nothing else: an unknown string is still refused).
MisfirePolicyName = Annotated[MisfirePolicy, Field(strict=False)]
ConcurrencyPolicyName = Annotated[ConcurrencyPolicy, Field(strict=False)]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RetryRequest(RequestModel):
    """A retry policy; omitted (or null) fields keep their default (create) or value (patch)."""

    max_attempts: Annotated[int, Field(ge=1, le=1000)] | None = None
    backoff: Literal["fixed", "exponential"] | None = None
    initial_delay_seconds: DelaySeconds | None = None
    max_delay_seconds: DelaySeconds | None = None
    jitter: bool | None = None

    def applied_to(self, base: RetryPolicy) -> RetryPolicy:
        """``base`` with the fields this request sets replaced."""
        given = self.model_dump(exclude_none=True)
        return RetryPolicy.from_json({**base.to_json(), **given})


class JobCreate(RequestModel):
    """``POST /jobs``. Without ``schedule`` the job is one-time, at ``run_at`` or at once."""

    name: JobName | None = None
    type: TypeName
    schedule: ScheduleText | None = None
    run_at: RunAtText | None = None
    timezone: TimezoneName = "UTC"
    payload: Payload = Field(default_factory=dict)
    queue: QueueName | None = None
    priority: Priority = 0
    # Omitted: the configured default; null: no timeout at all.
    timeout_seconds: TimeoutSeconds | None = None
    retry: RetryRequest | None = None
    misfire_policy: MisfirePolicyName = MisfirePolicy.COALESCE
    # Omitted or null: the scheduler's default (scheduler.misfire_grace_seconds).
    misfire_grace_seconds: MisfireGraceSeconds | None = None
    concurrency_policy: ConcurrencyPolicyName = ConcurrencyPolicy.ALLOW


BATCH_SIZE_MAX = 1000


class JobBatchCreate(RequestModel):
    """``POST /jobs/batch``: up to 1,000 jobs, created all together or not at all."""

    jobs: list[JobCreate] = Field(min_length=1, max_length=BATCH_SIZE_MAX)


class TriggerRequest(RequestModel):
    """``POST /jobs/{id}/trigger`` (optional body): this run's payload instead of the job's."""

    payload: Payload | None = None


_NOT_NULLABLE_IN_PATCH = (
    "type",
    "timezone",
    "payload",
    "queue",
    "priority",
    "retry",
    "misfire_policy",
    "concurrency_policy",
)


class JobPatch(RequestModel):
    """``PATCH /jobs/{id}``: only the fields present change.

    ``schedule: null`` makes the job one-time; ``name: null`` and ``timeout_seconds:
    null`` clear them; the other fields may be left out but not set to null.
    """

    name: JobName | None = None
    type: TypeName | None = None
    schedule: ScheduleText | None = None
    run_at: RunAtText | None = None
    timezone: TimezoneName | None = None
    payload: Payload | None = None
    queue: QueueName | None = None
    priority: Priority | None = None
    timeout_seconds: TimeoutSeconds | None = None
    retry: RetryRequest | None = None
    misfire_policy: MisfirePolicyName | None = None
    misfire_grace_seconds: MisfireGraceSeconds | None = None
    concurrency_policy: ConcurrencyPolicyName | None = None

    @field_validator(*_NOT_NULLABLE_IN_PATCH)
    @classmethod
    def _refuse_null(cls, value: object) -> object:
        # Runs only for fields present in the body: absent means "keep", null is refused.
        if value is None:
            raise ValueError("may not be null")
        return value


class RetryOut(BaseModel):
    max_attempts: int
    backoff: Literal["fixed", "exponential"]
    initial_delay_seconds: float
    max_delay_seconds: float
    jitter: bool

    @classmethod
    def from_policy(cls, policy: RetryPolicy) -> RetryOut:
        return cls.model_validate(policy.to_json())


class JobOut(BaseModel):
    id: uuid.UUID
    name: str | None
    type: str
    schedule: str | None
    timezone: str
    run_at: datetime | None
    payload: Payload
    queue: str
    priority: int
    timeout_seconds: float | None
    retry: RetryOut
    misfire_policy: MisfirePolicy
    misfire_grace_seconds: float | None
    concurrency_policy: ConcurrencyPolicy
    status: JobStatus
    next_run_at: datetime | None
    last_fired_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_job(cls, job: Job, redaction: HeaderRedaction = DEFAULT_REDACTION) -> JobOut:
        """The job as answered: secret header values in its payload shown as ``"***"``."""
        return cls(
            id=job.id,
            name=job.name,
            type=job.type,
            schedule=job.schedule,
            timezone=job.timezone,
            run_at=job.run_at,
            payload=redact_headers(job.payload, redaction),
            queue=job.queue,
            priority=job.priority,
            timeout_seconds=job.timeout_seconds,
            retry=RetryOut.from_policy(job.retry),
            misfire_policy=job.misfire_policy,
            misfire_grace_seconds=job.misfire_grace_seconds,
            concurrency_policy=job.concurrency_policy,
            status=job.status,
            next_run_at=job.next_run_at,
            last_fired_at=job.last_fired_at,
            created_at=job.created_at,
            updated_at=job.updated_at,
        )


class AttemptOut(BaseModel):
    attempt: int
    status: AttemptStatus
    worker_id: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    result: Payload | None
    # The handler's latest progress report, as of the worker's last heartbeat.
    progress: Payload | None

    @classmethod
    def from_attempt(cls, attempt: Attempt) -> AttemptOut:
        return cls(
            attempt=attempt.attempt,
            status=attempt.status,
            worker_id=attempt.worker_id,
            started_at=attempt.started_at,
            finished_at=attempt.finished_at,
            error=attempt.error,
            result=attempt.result,
            progress=attempt.progress,
        )


class RunOut(BaseModel):
    id: uuid.UUID
    job_id: uuid.UUID
    type: str
    queue: str
    priority: int
    scheduled_for: datetime
    trigger: RunTrigger
    status: RunStatus
    attempt: int
    max_attempts: int
    not_before: datetime
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_error: str | None
    result: Payload | None
    lease_owner: str | None
    lease_expires_at: datetime | None

    @classmethod
    def from_run(cls, run: Run) -> RunOut:
        return cls(
            id=run.id,
            job_id=run.job_id,
            type=run.job_type,
            queue=run.queue,
            priority=run.priority,
            scheduled_for=run.scheduled_for,
            trigger=run.trigger,
            status=run.status,
            attempt=run.attempt,
            max_attempts=run.retry.max_attempts,
            not_before=run.not_before,
            created_at=run.created_at,
            updated_at=run.updated_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            last_error=run.last_error,
            result=run.result,
            lease_owner=run.lease_owner,
            lease_expires_at=run.lease_expires_at,
        )


class RunDetailOut(RunOut):
    # The current attempt's progress: what a user watching a running run looks for.
    progress: Payload | None
    attempts: list[AttemptOut]

    @classmethod
    def from_run_and_attempts(cls, run: Run, attempts: list[Attempt]) -> RunDetailOut:
        current = next((attempt for attempt in attempts if attempt.attempt == run.attempt), None)
        return cls(
            **RunOut.from_run(run).model_dump(),
            progress=None if current is None else current.progress,
            attempts=[AttemptOut.from_attempt(attempt) for attempt in attempts],
        )


class JobBatch(BaseModel):
    items: list[JobOut]


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class RunPage(BaseModel):
    items: list[RunOut]
    next_cursor: str | None


WorkerStatus = Literal["alive", "gone"]


class WorkerOut(BaseModel):
    """A registered worker; ``status`` is decided by the API from its heartbeat's age."""

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
    status: WorkerStatus

    @classmethod
    def from_record(cls, record: WorkerRecord, status: WorkerStatus) -> WorkerOut:
        return cls(
            id=record.info.id,
            host=record.info.host,
            pid=record.info.pid,
            queues=record.info.queues,
            handler_types=record.info.handler_types,
            concurrency=record.info.concurrency,
            started_at=record.started_at,
            heartbeat_at=record.heartbeat_at,
            stopped_at=record.stopped_at,
            runs_in_progress=record.runs_in_progress,
            status=status,
        )


class WorkerList(BaseModel):
    items: list[WorkerOut]


class SchedulePreview(BaseModel):
    schedule: str
    timezone: str
    fire_times: list[datetime]


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class ProblemFieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, with ``errors`` naming each field at fault."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[ProblemFieldError] = Field(default_factory=list)


# Documents the error answers of every route in the OpenAPI document.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": Problem, "description": "The request was refused (application/problem+json)."},
    "5XX": {"model": Problem, "description": "The server failed (application/problem+json)."},
}
