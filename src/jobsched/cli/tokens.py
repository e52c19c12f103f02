"""``jobsched tokens create|list|revoke``: API tokens, straight on the database like ``migrate``.

For the first admin token of a deployment, before any API answers; afterwards
``POST/GET/DELETE /tokens`` do the same over HTTP. Each change writes its audit row
(token name ``cli``, the operator's shell being the caller).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
from datetime import datetime, timedelta

from jobsched.config.settings import Settings
from jobsched.core.access import AuditEntry, Principal, Role, generate_token, hash_token
from jobsched.core.errors import InvalidInputError
from jobsched.storage.base import Storage

# The caller of the audit rows these commands write.
CLI_PRINCIPAL = Principal(name="cli", role=Role.ADMIN)

_EXPIRY = re.compile(r"^(?P<number>[1-9][0-9]{0,5})(?P<unit>[mhdw])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m`` or ``2w``."""
    match = _EXPIRY.match(text.strip())
    if match is None:
        raise InvalidInputError(
            "--expires-in", f"{text!r} is not a duration such as 90d, 12h, 30m or 2w"
        )
    return timedelta(seconds=int(match["number"]) * _UNIT_SECONDS[match["unit"]])


def add_token_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    description = "create, list or revoke API tokens (directly on the database)"
    tokens = commands.add_parser("tokens", help=description, description=description)
    tokens.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS)
    actions = tokens.add_subparsers(dest="tokens_action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a token and print it (shown once)")
    create.add_argument("--name", required=True, help="a unique name, e.g. ci")
    create.add_argument(
        "--role", required=True, choices=[role.value for role in Role], help="what it may do"
    )
    create.add_argument(
        "--queue",
        dest="queues",
        action="append",
        metavar="NAME",
        help="limit the token to this queue; repeatable (default: every queue)",
    )
    create.add_argument("--expires-in", metavar="DURATION", help="e.g. 90d, 12h (default: never)")
    actions.add_parser("list", help="list tokens (never the tokens themselves)").add_argument(
        "--json", action="store_true", help="one JSON object per line"
    )
    revoke = actions.add_parser("revoke", help="revoke a token by name or id, at once")
    revoke.add_argument("token", metavar="NAME|ID")
    for action in actions.choices.values():
        action.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS)


def run_token_command(settings: Settings, options: argparse.Namespace) -> None:
    asyncio.run(_run(settings, options))


async def _run(settings: Settings, options: argparse.Namespace) -> None:
    from jobsched.storage.database import SQLStorage  # noqa: PLC0415 - keeps --help fast

    logging.getLogger("alembic").setLevel(logging.WARNING)  # the schema check's chatter
    storage = SQLStorage.from_url(settings.database.url, pool_size=1)
    try:
        await storage.check_schema()
        if options.tokens_action == "create":
            await _create(storage, options)
        elif options.tokens_action == "list":
            await _list(storage, as_json=options.json)
        else:
            await _revoke(storage, options.token)
    finally:
        await storage.close()


async def _create(storage: Storage, options: argparse.Namespace) -> None:
    expires_in = parse_expiry(options.expires_in) if options.expires_in else None
    secret = generate_token()
    now = await storage.now()
    token = await storage.create_token(
        name=options.name,
        role=Role(options.role),
        queues=tuple(options.queues) if options.queues else None,
        token_hash=hash_token(secret),
        expires_at=now + expires_in if expires_in is not None else None,
        now=now,
        audit=AuditEntry(action="token.created", actor=CLI_PRINCIPAL),
    )
    expiry = f", expires {_time(token.expires_at)}" if token.expires_at else ""
    print(secret)
    print(
        f"created token {token.name} ({token.id}), role {token.role.value}{expiry}; "
        "it is shown only this once",
        file=sys.stderr,
    )


async def _list(storage: Storage, *, as_json: bool) -> None:
    tokens = await storage.list_tokens()
    if as_json:
        for token in tokens:
            print(
                json.dumps(
                    {
                        "id": str(token.id),
                        "name": token.name,
                        "role": token.role.value,
                        "queues": list(token.queues) if token.queues is not None else None,
                        "created_at": _time(token.created_at),
                        "expires_at": _time(token.expires_at),
                        "last_used_at": _time(token.last_used_at),
                        "revoked_at": _time(token.revoked_at),
                    }
                )
            )
        return
    print(f"{'NAME':<24} {'ROLE':<8} {'QUEUES':<20} {'STATE':<8} {'LAST USED':<20} ID")
    now = await storage.now()
    for token in tokens:
        state = "revoked" if token.revoked_at else "live" if token.usable_at(now) else "expired"
        queues = ",".join(token.queues) if token.queues is not None else "*"
        print(
            f"{token.name:<24} {token.role.value:<8} {queues:<20} {state:<8} "
            f"{_time(token.last_used_at) or '-':<20} {token.id}"
        )


async def _revoke(storage: Storage, name_or_id: str) -> None:
    now = await storage.now()
    token = await storage.revoke_token(
        name_or_id, now=now, audit=AuditEntry(action="token.revoked", actor=CLI_PRINCIPAL)
    )
    print(f"revoked token {token.name} ({token.id})")


def _time(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None
