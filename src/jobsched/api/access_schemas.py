"""Request and response bodies of ``/tokens`` and ``/audit``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from jobsched.api.schemas import RequestModel
from jobsched.core.access import ApiToken, AuditRecord, Role

TokenName = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:@-]+$")
]
QueueName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class TokenCreate(RequestModel):
    """``POST /tokens``. ``expires_in_seconds`` omitted: the token never expires."""

    name: TokenName
    role: Annotated[Role, Field(strict=False)]
    queues: list[QueueName] | None = Field(default=None, min_length=1, max_length=100)
    expires_in_seconds: float | None = Field(default=None, gt=0, le=10 * 365 * 86400)


class TokenOut(BaseModel):
    id: uuid.UUID
    name: str
    role: Role
    queues: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_token(cls, token: ApiToken) -> TokenOut:
        return cls(
            id=token.id,
            name=token.name,
            role=token.role,
            queues=list(token.queues) if token.queues is not None else None,
            created_at=token.created_at,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
            revoked_at=token.revoked_at,
        )


class TokenCreated(TokenOut):
    """The new token, with its secret: shown this once, never stored or shown again."""

    token: str


class TokenList(BaseModel):
    items: list[TokenOut]


class AuditOut(BaseModel):
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

    @classmethod
    def from_record(cls, record: AuditRecord) -> AuditOut:
        return cls(
            id=record.id,
            at=record.at,
            action=record.action,
            token_id=record.token_id,
            token_name=record.token_name,
            target_kind=record.target_kind,
            target_id=record.target_id,
            request_id=record.request_id,
            client_address=record.client_address,
            fields=list(record.fields),
        )


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_cursor: str | None
