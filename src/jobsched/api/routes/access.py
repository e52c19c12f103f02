"""``/tokens`` and ``/audit``: API tokens and the audit log, for the ``admin`` role."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import AwareDatetime

from jobsched.api.access_schemas import (
    AuditOut,
    AuditPage,
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenOut,
)
from jobsched.api.auth import Admin, audit_entry
from jobsched.api.dependencies import PageDependency, ServicesDependency
from jobsched.api.request_checks import CheckedRoute
from jobsched.api.schemas import PROBLEM_RESPONSES
from jobsched.core.access import generate_token, hash_token
from jobsched.core.errors import InvalidInputError
from jobsched.storage.base import AuditFilter

router = APIRouter(route_class=CheckedRoute, tags=["access"], responses=PROBLEM_RESPONSES)

TokenRef = Annotated[
    str, Path(alias="id", min_length=1, max_length=200, description="The token's id or name.")
]


@router.post("/tokens", status_code=status.HTTP_201_CREATED, summary="Create an API token")
async def create_token(
    body: TokenCreate,
    request: Request,
    principal: Admin,
    services: ServicesDependency,
    response: Response,
) -> TokenCreated:
    """The answer holds the token itself, the only time it is shown; only its hash is kept."""
    secret = generate_token()
    now = await services.storage.now()
    expires_at = (
        now + timedelta(seconds=body.expires_in_seconds)
        if body.expires_in_seconds is not None
        else None
    )
    token = await services.storage.create_token(
        name=body.name,
        role=body.role,
        queues=tuple(body.queues) if body.queues is not None else None,
        token_hash=hash_token(secret),
        expires_at=expires_at,
        now=now,
        audit=audit_entry(request, principal, "token.created"),
    )
    response.headers["Location"] = f"/tokens/{token.id}"
    response.headers["Cache-Control"] = "no-store"
    return TokenCreated(**TokenOut.from_token(token).model_dump(), token=secret)


@router.get("/tokens", summary="List API tokens")
async def list_tokens(principal: Admin, services: ServicesDependency) -> TokenList:
    """Every token, revoked ones included; never the tokens themselves."""
    del principal
    tokens = await services.storage.list_tokens()
    return TokenList(items=[TokenOut.from_token(token) for token in tokens])


@router.delete("/tokens/{id}", summary="Revoke an API token")
async def revoke_token(
    token_ref: TokenRef, request: Request, principal: Admin, services: ServicesDependency
) -> TokenOut:
    """Revoke by id or by name; effective on every API process within api.auth.cache_seconds."""
    now = await services.storage.now()
    token = await services.storage.revoke_token(
        token_ref, now=now, audit=audit_entry(request, principal, "token.revoked")
    )
    return TokenOut.from_token(token)


@router.get("/audit", summary="List the audit log")
async def list_audit(
    *,
    principal: Admin,
    services: ServicesDependency,
    page: PageDependency,
    action: Annotated[str | None, Query(max_length=64, description="e.g. job.created")] = None,
    target_kind: Annotated[str | None, Query(max_length=32, description="job, run or token")] = (
        None
    ),
    target_id: Annotated[str | None, Query(max_length=200)] = None,
    token: Annotated[str | None, Query(max_length=200, description="A token's name.")] = None,
    since: Annotated[AwareDatetime | None, Query(description="At or after (ISO 8601).")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Before (ISO 8601).")] = None,
) -> AuditPage:
    """Audit rows newest first: who changed what, when, from where (field names, no values)."""
    del principal
    audit_filter = AuditFilter(
        action=action,
        target_kind=target_kind,
        target_id=target_id,
        token_name=token,
        since=_in_utc(since, "since"),
        until=_in_utc(until, "until"),
    )
    found = await services.storage.list_audit(audit_filter, limit=page.limit, cursor=page.cursor)
    return AuditPage(
        items=[AuditOut.from_record(record) for record in found.items],
        next_cursor=found.next_cursor,
    )


def _in_utc(moment: datetime | None, field: str) -> datetime | None:
    """``moment`` in UTC; ``0001-01-01T00:00:00+01:00`` has no UTC time and is refused."""
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError as error:
        raise InvalidInputError(field, "is outside the years 1 to 9999 in UTC") from error
