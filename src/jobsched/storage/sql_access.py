"""API tokens and the audit log in SQL.

Tokens are looked up by hash on each authenticated request (the API may keep a
lookup for a few seconds, no longer). ``last_used_at`` is written at most once a
minute per token, so authentication does not turn every read into a write. Audit
rows are only ever inserted (by the change they describe, see ``write_audit``),
listed, and deleted by retention: nothing here edits one.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa

from jobsched.core.access import ApiToken, AuditEntry, AuditRecord, Role
from jobsched.core.errors import ConflictError, NotFoundError
from jobsched.core.ids import new_id
from jobsched.core.models import Page
from jobsched.storage.base import AuditFilter
from jobsched.storage.pagination import decode_cursor, encode_cursor
from jobsched.storage.schema import api_tokens, audit_events
from jobsched.storage.sql_base import SQLStorageBase, uuid_from_cursor, write_audit

# How stale a token's last_used_at may be before a request writes it again.
LAST_USED_PRECISION = timedelta(minutes=1)


class SQLAccess(SQLStorageBase):
    """The tokens and audit part of ``SQLStorage``."""

    async def create_token(
        self,
        *,
        name: str,
        role: Role,
        queues: tuple[str, ...] | None,
        token_hash: str,
        expires_at: datetime | None,
        now: datetime,
        audit: AuditEntry | None = None,
    ) -> ApiToken:
        token = ApiToken(
            id=new_id(),
            name=name,
            role=role,
            queues=queues,
            token_hash=token_hash,
            created_at=now,
            expires_at=expires_at,
        )
        try:
            async with self._transaction() as connection:
                await connection.execute(
                    sa.insert(api_tokens).values(
                        id=token.id,
                        name=name,
                        role=role.value,
                        queues=list(queues) if queues is not None else None,
                        token_hash=token_hash,
                        created_at=now,
                        expires_at=expires_at,
                    )
                )
                await write_audit(
                    connection,
                    audit,
                    now,
                    target_kind="token",
                    target_id=token.id,
                    fields=("name", "role", "queues", "expires_at"),
                )
        except sa.exc.IntegrityError as error:
            raise ConflictError("name", f"a live token named {name!r} already exists") from error
        return token

    async def find_token(self, token_hash: str) -> ApiToken | None:
        """The token with this hash, revoked and expired ones included (the caller decides)."""
        query = sa.select(api_tokens).where(api_tokens.c.token_hash == token_hash)
        async with self._single_statement() as connection:
            row = (await connection.execute(query)).mappings().first()
        return None if row is None else _token_from_row(row)

    async def note_token_used(self, token_id: uuid.UUID, now: datetime) -> None:
        """Set ``last_used_at`` to ``now`` unless it is already less than a minute old."""
        stale = now - LAST_USED_PRECISION
        statement = (
            sa.update(api_tokens)
            .where(
                api_tokens.c.id == token_id,
                sa.or_(api_tokens.c.last_used_at.is_(None), api_tokens.c.last_used_at < stale),
            )
            .values(last_used_at=now)
        )
        async with self._single_statement() as connection:
            await connection.execute(statement)

    async def list_tokens(self) -> list[ApiToken]:
        query = sa.select(api_tokens).order_by(api_tokens.c.id)
        async with self._single_statement() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [_token_from_row(row) for row in rows]

    async def revoke_token(
        self, name_or_id: str, *, now: datetime, audit: AuditEntry | None = None
    ) -> ApiToken:
        """Revoke the live token of that name, or the token of that id; ``NotFoundError`` else.

        Revoking a revoked token (by id) changes nothing and writes no audit row.
        """
        async with self._transaction() as connection:
            row = (
                (await connection.execute(_token_lookup(name_or_id).with_for_update()))
                .mappings()
                .first()
            )
            if row is None:
                raise NotFoundError("token", name_or_id)
            token = _token_from_row(row)
            if token.revoked_at is not None:
                return token
            await connection.execute(
                sa.update(api_tokens).where(api_tokens.c.id == token.id).values(revoked_at=now)
            )
            await write_audit(
                connection,
                audit,
                now,
                target_kind="token",
                target_id=token.id,
                fields=("revoked_at",),
            )
        return dataclasses.replace(token, revoked_at=now)

    async def list_audit(
        self, audit_filter: AuditFilter, *, limit: int, cursor: str | None
    ) -> Page[AuditRecord]:
        """Audit rows newest first (ids are time-ordered UUIDv7)."""
        query = sa.select(audit_events).order_by(audit_events.c.id.desc()).limit(limit + 1)
        for column, value in (
            (audit_events.c.action, audit_filter.action),
            (audit_events.c.target_kind, audit_filter.target_kind),
            (audit_events.c.target_id, audit_filter.target_id),
            (audit_events.c.token_name, audit_filter.token_name),
        ):
            if value is not None:
                query = query.where(column == value)
        if audit_filter.since is not None:
            query = query.where(audit_events.c.at >= audit_filter.since)
        if audit_filter.until is not None:
            query = query.where(audit_events.c.at < audit_filter.until)
        if cursor is not None:
            (before_id,) = decode_cursor(cursor, 1)
            query = query.where(audit_events.c.id < uuid_from_cursor(before_id))
        async with self._single_statement() as connection:
            rows = (await connection.execute(query)).mappings().all()
        items = [_audit_from_row(row) for row in rows[:limit]]
        next_cursor = encode_cursor(str(items[-1].id)) if len(rows) > limit else None
        return Page(items=items, next_cursor=next_cursor)

    async def prune_audit(self, before: datetime, batch_size: int) -> int:
        """Retention: delete up to ``batch_size`` audit rows older than ``before``."""
        oldest = (
            sa.select(audit_events.c.id)
            .where(audit_events.c.at < before)
            .order_by(audit_events.c.at)
            .limit(batch_size)
        )
        async with self._transaction() as connection:
            result = await connection.execute(
                sa.delete(audit_events).where(audit_events.c.id.in_(oldest))
            )
        return result.rowcount


def _token_lookup(name_or_id: str) -> sa.Select[tuple[object, ...]]:
    try:
        token_id = uuid.UUID(name_or_id)
    except ValueError:
        return sa.select(api_tokens).where(
            api_tokens.c.name == name_or_id, api_tokens.c.revoked_at.is_(None)
        )
    return sa.select(api_tokens).where(
        sa.or_(
            api_tokens.c.id == token_id,
            sa.and_(api_tokens.c.name == name_or_id, api_tokens.c.revoked_at.is_(None)),
        )
    )


def _token_from_row(row: sa.RowMapping) -> ApiToken:
    queues = row["queues"]
    return ApiToken(
        id=row["id"],
        name=row["name"],
        role=Role(row["role"]),
        queues=tuple(queues) if queues is not None else None,
        token_hash=row["token_hash"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )


def _audit_from_row(row: sa.RowMapping) -> AuditRecord:
    return AuditRecord(
        id=row["id"],
        at=row["at"],
        action=row["action"],
        token_id=row["token_id"],
        token_name=row["token_name"],
        target_kind=row["target_kind"],
        target_id=row["target_id"],
        request_id=row["request_id"],
        client_address=row["client_address"],
        fields=tuple(row["fields"]),
    )
