"""What a request does to a job, as pure functions of the request, the job and ``now``.

Routes validate every value here *before* storage is called, so a refused request
writes nothing; the edits handed to ``Storage.update_job`` are pure functions of
the locked job, and whatever they raise also leaves the row untouched.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime

from jobsched.api.handler_payloads import check_handler_payload
from jobsched.api.http_targets import HTTP_JOB_TYPE, check_http_target
from jobsched.api.schemas import JobCreate, JobPatch
from jobsched.config.settings import Settings
from jobsched.core.errors import ConflictError, InvalidInputError
from jobsched.core.models import Job, JobSpec, JobStatus, JsonObject
from jobsched.core.network_policy import NetworkPolicy
from jobsched.core.planning import first_fire_time
from jobsched.core.redaction import HeaderRedaction, restore_redacted
from jobsched.schedules import parse_run_at, parse_schedule, parse_timezone

# Any aware instant does to check an expression: ``@every`` needs an anchor to parse,
# but whether it is valid does not depend on which.
_VALIDATION_ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
_RUN_AT_WITH_SCHEDULE = "run_at is only for one-time jobs; omit it or set schedule to null"


@dataclasses.dataclass(frozen=True, slots=True)
class Timing:
    """When a job fires, as the user defined it."""

    schedule: str | None
    timezone: str
    run_at: datetime | None

    def fire_key(self) -> tuple[str | None, str | None, datetime | None]:
        """What decides the fire times: a one-time job's timezone changes none of them."""
        if self.schedule is None:
            return (None, None, self.run_at)
        return (self.schedule, self.timezone, None)


def validated_timing(schedule: str | None, timezone: str, run_at_text: str | None) -> Timing:
    """Check a schedule, timezone and ``run_at`` together; raise ``InvalidInputError``.

    The schedule comes back normalised (``@Hourly`` is ``@hourly``). Fire times are
    computed later, from the job's real anchor, by ``first_fire_time``.
    """
    parse_timezone(timezone)
    run_at = parse_run_at(run_at_text) if run_at_text is not None else None
    if schedule is not None:
        if run_at is not None:
            raise InvalidInputError("run_at", _RUN_AT_WITH_SCHEDULE)
        schedule = parse_schedule(schedule, timezone, anchor=_VALIDATION_ANCHOR).expression
    return Timing(schedule=schedule, timezone=timezone, run_at=run_at)


@dataclasses.dataclass(frozen=True, slots=True)
class PayloadRules:
    """What the API's config says of payloads: where http jobs may go, what is secret,
    how big one may be."""

    network_policy: NetworkPolicy
    redaction: HeaderRedaction
    max_bytes: int = 256 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> PayloadRules:
        http = settings.worker.http
        return cls(
            http.network_policy(),
            HeaderRedaction.from_pattern(http.redact_header_pattern),
            settings.jobs.payload_max_bytes,
        )

    def check_size(self, payload: JsonObject, field: str = "payload") -> None:
        """Refuse a payload longer than ``jobs.payload_max_bytes`` as compact UTF-8 JSON."""
        size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
        if size > self.max_bytes:
            raise InvalidInputError(
                field,
                f"is {size} bytes as JSON, more than jobs.payload_max_bytes ({self.max_bytes})",
            )

    def check(self, job_type: str, payload: JsonObject) -> None:
        """Refuse a payload too big, or one its handler is sure to refuse
        (``InvalidInputError``)."""
        self.check_size(payload)
        check_handler_payload(job_type, payload)
        if job_type == HTTP_JOB_TYPE:
            check_http_target(payload, self.network_policy)


def spec_from_create(request: JobCreate, settings: Settings, rules: PayloadRules) -> JobSpec:
    """The job a ``POST /jobs`` asks for, with the configured defaults filled in."""
    rules.check(request.type, request.payload)
    timing = validated_timing(request.schedule, request.timezone, request.run_at)
    defaults = settings.jobs
    retry = defaults.retry.policy()
    if request.retry is not None:
        retry = request.retry.applied_to(retry)
    timeout_seconds = (
        request.timeout_seconds
        if "timeout_seconds" in request.model_fields_set
        else defaults.timeout_seconds
    )
    return JobSpec(
        type=request.type,
        payload=request.payload,
        name=request.name,
        schedule=timing.schedule,
        timezone=timing.timezone,
        run_at=timing.run_at,
        queue=request.queue or defaults.queue,
        priority=request.priority,
        timeout_seconds=timeout_seconds,
        retry=retry,
        misfire_policy=request.misfire_policy,
        misfire_grace_seconds=request.misfire_grace_seconds,
        concurrency_policy=request.concurrency_policy,
    )


def first_run_of(spec: JobSpec, now: datetime) -> datetime:
    return first_fire_time(spec.schedule, spec.timezone, spec.run_at, anchor=now)


def prevalidate_patch(patch: JobPatch) -> None:
    """Refuse bad schedule, timezone or ``run_at`` values before the job is even read.

    Whether they fit the job's other fields is checked by the edit itself.
    """
    given = patch.model_fields_set
    timezone = patch.timezone if patch.timezone is not None else "UTC"
    parse_timezone(timezone)
    if "run_at" in given and patch.run_at is not None:
        parse_run_at(patch.run_at)
    if "schedule" in given and patch.schedule is not None:
        if "run_at" in given and patch.run_at is not None:
            raise InvalidInputError("run_at", _RUN_AT_WITH_SCHEDULE)
        parse_schedule(patch.schedule, timezone, anchor=_VALIDATION_ANCHOR)


def _patched_timing(job: Job, patch: JobPatch) -> Timing:
    given = patch.model_fields_set
    schedule = patch.schedule if "schedule" in given else job.schedule
    timezone = patch.timezone if patch.timezone is not None else job.timezone
    if "run_at" in given:
        run_at_text = patch.run_at
    elif "schedule" in given and schedule is not None:
        run_at_text = None  # becoming recurring drops the old one-time run_at
    else:
        run_at_text = job.run_at.isoformat() if job.run_at is not None else None
    return validated_timing(schedule, timezone, run_at_text)


def _rescheduled(job: Job, timing: Timing, now: datetime) -> Job:
    """``job`` with new timing: next fire time and anchor recomputed from ``now``.

    A completed job becomes active again; a paused job stays paused.
    """
    next_run_at = first_fire_time(timing.schedule, timing.timezone, timing.run_at, anchor=now)
    status = JobStatus.PAUSED if job.status == JobStatus.PAUSED else JobStatus.ACTIVE
    return dataclasses.replace(
        job,
        schedule=timing.schedule,
        timezone=timing.timezone,
        run_at=timing.run_at,
        next_run_at=next_run_at,
        schedule_anchor_at=now,
        status=status,
    )


_PATCHABLE_AS_GIVEN = (
    "name",
    "type",
    "payload",
    "queue",
    "priority",
    "timeout_seconds",
    "misfire_policy",
    "misfire_grace_seconds",
    "concurrency_policy",
)


def patch_edit(patch: JobPatch, now: datetime, rules: PayloadRules) -> Callable[[Job], Job]:
    """The edit ``PATCH /jobs/{id}`` applies to the locked job (see ``Storage.update_job``).

    A redacted header sent back as ``"***"`` keeps its stored value; a payload or
    type change is checked against ``rules``.
    """

    def edit(job: Job) -> Job:
        given = patch.model_fields_set
        timing = _patched_timing(job, patch)
        old_timing = Timing(job.schedule, job.timezone, job.run_at)
        if timing.fire_key() != old_timing.fire_key():
            job = _rescheduled(job, timing, now)
        else:
            job = dataclasses.replace(job, timezone=timing.timezone)
        changes: dict[str, object] = {"updated_at": now}
        for field in _PATCHABLE_AS_GIVEN:
            if field in given:
                changes[field] = getattr(patch, field)
        if patch.retry is not None:
            changes["retry"] = patch.retry.applied_to(job.retry)
        if patch.payload is not None:
            changes["payload"] = restore_redacted(patch.payload, job.payload, rules.redaction)
        if "payload" in given or "type" in given:
            payload = changes.get("payload", job.payload)
            assert isinstance(payload, dict)
            rules.check(patch.type or job.type, payload)
        return dataclasses.replace(job, **changes)  # type: ignore[arg-type]  # checked by JobPatch

    return edit


def pause_edit(now: datetime) -> Callable[[Job], Job]:
    """Pausing keeps ``next_run_at``: the scheduler fires only active jobs."""

    def edit(job: Job) -> Job:
        if job.status == JobStatus.COMPLETED:
            raise ConflictError("status", "a completed job cannot be paused")
        return dataclasses.replace(job, status=JobStatus.PAUSED, updated_at=now)

    return edit


def resume_edit(now: datetime) -> Callable[[Job], Job]:
    """Resuming a recurring job skips the fire times it missed while paused.

    Its next fire time is the first one after ``now``, in the phase of its anchor
    (an ``@every`` keeps its rhythm); a one-time job keeps its time and fires at
    once if that has passed. Resuming an active job changes nothing.
    """

    def edit(job: Job) -> Job:
        if job.status == JobStatus.COMPLETED:
            raise ConflictError("status", "a completed job cannot be resumed")
        if job.status == JobStatus.ACTIVE:
            return job
        next_run_at = job.next_run_at
        if job.schedule is not None:
            schedule = parse_schedule(job.schedule, job.timezone, anchor=job.schedule_anchor_at)
            next_run_at = schedule.next_fire_after(now)
        status = JobStatus.ACTIVE if next_run_at is not None else JobStatus.COMPLETED
        return dataclasses.replace(job, status=status, next_run_at=next_run_at, updated_at=now)

    return edit
