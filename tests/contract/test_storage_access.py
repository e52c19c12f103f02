"""The storage contract for API tokens and the audit log, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobsched.core.access import AuditEntry, Principal, Role, generate_token, hash_token
from jobsched.core.errors import ConflictError, NotFoundError
from jobsched.storage.base import AuditFilter
from jobsched.storage.database import SQLStorage

ACTOR = Principal(name="tester", role=Role.ADMIN)


async def _token(storage: SQLStorage, name: str, **extra: object) -> tuple[str, object]:
    secret = generate_token()
    now = await storage.now()
    token = await storage.create_token(
        name=name,
        role=Role(str(extra.get("role", "read"))),
        queues=extra.get("queues"),  # type: ignore[arg-type]
        token_hash=hash_token(secret),
        expires_at=None,
        now=now,
    )
    return secret, token


async def test_a_token_is_found_by_its_hash_only(storage: SQLStorage) -> None:
    secret, created = await _token(storage, "ci", role="write", queues=("reports",))
    found = await storage.find_token(hash_token(secret))
    assert found == created
    assert found is not None
    assert found.principal().queues == frozenset({"reports"})
    assert await storage.find_token(hash_token(secret + "x")) is None
    assert secret not in str(await storage.list_tokens())


async def test_a_live_name_is_unique_and_freed_by_revocation(storage: SQLStorage) -> None:
    _, first = await _token(storage, "deploy")
    with pytest.raises(ConflictError) as refused:
        await _token(storage, "deploy")
    assert refused.value.field == "name"
    now = await storage.now()
    revoked = await storage.revoke_token("deploy", now=now)
    assert revoked.revoked_at == now
    _, second = await _token(storage, "deploy")
    assert second != first
    # By id, a revoked token is found and revoking it again changes nothing.
    again = await storage.revoke_token(str(revoked.id), now=now + timedelta(hours=1))
    assert again.revoked_at == now
    with pytest.raises(NotFoundError):
        await storage.revoke_token("nobody", now=now)


async def test_last_use_is_written_at_most_once_a_minute(storage: SQLStorage) -> None:
    secret, _ = await _token(storage, "busy")
    token = await storage.find_token(hash_token(secret))
    assert token is not None
    now = await storage.now()
    await storage.note_token_used(token.id, now)
    await storage.note_token_used(token.id, now + timedelta(seconds=30))
    seen = await storage.find_token(hash_token(secret))
    assert seen is not None
    assert seen.last_used_at == now
    await storage.note_token_used(token.id, now + timedelta(seconds=61))
    later = await storage.find_token(hash_token(secret))
    assert later is not None
    assert later.last_used_at == now + timedelta(seconds=61)


async def test_audit_rows_are_listed_newest_first_filtered_and_pruned(
    storage: SQLStorage,
) -> None:
    now = await storage.now()
    entry = AuditEntry(action="token.created", actor=ACTOR, request_id="r1")
    for name in ("a", "b", "c"):
        await storage.create_token(
            name=name,
            role=Role.READ,
            queues=None,
            token_hash=hash_token(name),
            expires_at=None,
            now=now,
            audit=entry,
        )
    await storage.revoke_token("b", now=now, audit=AuditEntry(action="token.revoked", actor=ACTOR))
    page = await storage.list_audit(AuditFilter(), limit=3, cursor=None)
    assert [record.action for record in page.items] == [
        "token.revoked",
        "token.created",
        "token.created",
    ]
    assert page.next_cursor is not None
    rest = await storage.list_audit(AuditFilter(), limit=3, cursor=page.next_cursor)
    assert [record.action for record in rest.items] == ["token.created"]
    revoked = await storage.list_audit(AuditFilter(action="token.revoked"), limit=10, cursor=None)
    assert len(revoked.items) == 1
    assert revoked.items[0].token_name == "tester"
    assert revoked.items[0].fields == ("revoked_at",)
    future = await storage.list_audit(
        AuditFilter(since=now + timedelta(hours=1)), limit=10, cursor=None
    )
    assert future.items == []
    assert await storage.prune_audit(now + timedelta(seconds=1), batch_size=2) == 2
    assert await storage.prune_audit(now + timedelta(seconds=1), batch_size=2) == 2
    assert await storage.prune_audit(now + timedelta(seconds=1), batch_size=2) == 0


async def test_a_failed_change_leaves_no_audit_row(storage: SQLStorage) -> None:
    now = await storage.now()
    await _token(storage, "taken")
    with pytest.raises(ConflictError):
        await storage.create_token(
            name="taken",
            role=Role.READ,
            queues=None,
            token_hash=hash_token("other"),
            expires_at=None,
            now=now,
            audit=AuditEntry(action="token.created", actor=ACTOR),
        )
    assert (await storage.list_audit(AuditFilter(), limit=10, cursor=None)).items == []
