"""A Python client of the jobsched REST API: ``Client`` (sync) and ``AsyncClient``, on httpx.

It speaks HTTP only and imports nothing of the server. See ``docs/client.md``.
"""

from __future__ import annotations

from jobsched.client.aio import AsyncClient
from jobsched.client.errors import (
    ApiError,
    ClientError,
    FieldProblem,
    UnreachableError,
    WaitTimeoutError,
)
from jobsched.client.models import (
    Attempt,
    AuditRecord,
    Job,
    Run,
    RunDetail,
    SchedulePreview,
    Token,
    TokenCreated,
    Worker,
)
from jobsched.client.sync import Client

__all__ = [
    "ApiError",
    "AsyncClient",
    "Attempt",
    "AuditRecord",
    "Client",
    "ClientError",
    "FieldProblem",
    "Job",
    "Run",
    "RunDetail",
    "SchedulePreview",
    "Token",
    "TokenCreated",
    "UnreachableError",
    "WaitTimeoutError",
    "Worker",
]
