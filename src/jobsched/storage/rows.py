"""Rows to models: the only place that knows how columns map to the core records."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

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
from jobsched.storage.base import WorkerInfo, WorkerRecord


def job_from_row(row: sa.RowMapping) -> Job:
    return Job(
        id=row["id"],
        name=row["name"],
        type=row["type"],
        schedule=row["schedule"],
        timezone=row["timezone"],
        run_at=row["run_at"],
        payload=row["payload"],
        queue=row["queue"],
        priority=row["priority"],
        timeout_seconds=row["timeout_seconds"],
        retry=RetryPolicy.from_json(row["retry"]),
        status=JobStatus(row["status"]),
        next_run_at=row["next_run_at"],
        schedule_anchor_at=row["schedule_anchor_at"],
        last_fired_at=row["last_fired_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        misfire_policy=MisfirePolicy(row["misfire_policy"]),
        misfire_grace_seconds=row["misfire_grace_seconds"],
        concurrency_policy=ConcurrencyPolicy(row["concurrency_policy"]),
    )


def job_values(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "type": job.type,
        "schedule": job.schedule,
        "timezone": job.timezone,
        "run_at": job.run_at,
        "payload": job.payload,
        "queue": job.queue,
        "priority": job.priority,
        "timeout_seconds": job.timeout_seconds,
        "retry": job.retry.to_json(),
        "status": job.status.value,
        "next_run_at": job.next_run_at,
        "schedule_anchor_at": job.schedule_anchor_at,
        "last_fired_at": job.last_fired_at,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "misfire_policy": job.misfire_policy.value,
        "misfire_grace_seconds": job.misfire_grace_seconds,
        "concurrency_policy": job.concurrency_policy.value,
    }


def run_from_row(row: sa.RowMapping) -> Run:
    return Run(
        id=row["id"],
        job_id=row["job_id"],
        job_type=row["job_type"],
        queue=row["queue"],
        priority=row["priority"],
        payload=row["payload"],
        timeout_seconds=row["timeout_seconds"],
        retry=RetryPolicy.from_json(row["retry"]),
        scheduled_for=row["scheduled_for"],
        trigger=RunTrigger(row["trigger"]),
        status=RunStatus(row["status"]),
        attempt=row["attempt"],
        not_before=row["not_before"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        published_at=row["published_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        last_error=row["last_error"],
        result=row["result"],
    )


def attempt_from_row(row: sa.RowMapping) -> Attempt:
    return Attempt(
        id=row["id"],
        run_id=row["run_id"],
        attempt=row["attempt"],
        status=AttemptStatus(row["status"]),
        worker_id=row["worker_id"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=row["error"],
        result=row["result"],
        progress=row["progress"],
    )


def worker_from_row(row: sa.RowMapping) -> WorkerRecord:
    return WorkerRecord(
        info=WorkerInfo(
            id=row["id"],
            host=row["host"],
            pid=row["pid"],
            queues=list(row["queues"]),
            handler_types=list(row["handler_types"]),
            concurrency=row["concurrency"],
        ),
        started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"],
        stopped_at=row["stopped_at"],
        runs_in_progress=row["runs_in_progress"],
    )


def worker_info_values(info: WorkerInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "host": info.host,
        "pid": info.pid,
        "queues": list(info.queues),
        "handler_types": list(info.handler_types),
        "concurrency": info.concurrency,
    }
