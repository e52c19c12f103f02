"""Roles, principals, tokens and the auth switch's defaults."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from jobsched.api.auth import auth_enabled, is_loopback
from jobsched.config.settings import AuthSettings
from jobsched.core.access import (
    TOKEN_PREFIX,
    ApiToken,
    Principal,
    Role,
    generate_token,
    hash_token,
)
from jobsched.core.ids import new_id

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_each_role_includes_the_ones_before_it() -> None:
    order = [Role.READ, Role.OPERATE, Role.WRITE, Role.ADMIN]
    for held_index, held in enumerate(order):
        for needed_index, needed in enumerate(order):
            assert held.allows(needed) is (held_index >= needed_index)


def test_tokens_are_random_prefixed_and_hashed() -> None:
    tokens = {generate_token() for _ in range(100)}
    assert len(tokens) == 100
    token = tokens.pop()
    assert token.startswith(TOKEN_PREFIX)
    assert len(token) >= len(TOKEN_PREFIX) + 43  # 32 random bytes, base64url
    assert hash_token(token) == hash_token(token)
    assert token not in hash_token(token)


def test_a_token_is_usable_until_it_expires_or_is_revoked() -> None:
    token = ApiToken(
        id=new_id(),
        name="t",
        role=Role.READ,
        queues=("a",),
        token_hash="0" * 64,
        created_at=NOW,
        expires_at=NOW + timedelta(days=1),
    )
    assert token.usable_at(NOW)
    assert not token.usable_at(NOW + timedelta(days=1))
    assert not dataclasses.replace(token, revoked_at=NOW).usable_at(NOW)
    principal = token.principal()
    assert principal.sees_queue("a")
    assert not principal.sees_queue("b")
    assert Principal(name="all", role=Role.READ).sees_queue("anything")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("api.internal", False),
    ],
)
def test_auth_is_on_by_default_unless_loopback_only(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert auth_enabled(AuthSettings(), host) is (not loopback)
    assert auth_enabled(AuthSettings(enabled=True), host) is True
    assert auth_enabled(AuthSettings(enabled=False), host) is False
