"""Opaque cursors for keyset pagination: base64url of a small JSON array."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from jobsched.core.errors import InvalidInputError


def encode_cursor(*values: Any) -> str:
    raw = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """Decode a cursor of ``arity`` values made by ``encode_cursor``; refuse anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as error:
        raise InvalidInputError("cursor", "not a cursor returned by this API") from error
    if not isinstance(values, list) or len(values) != arity:
        raise InvalidInputError("cursor", "not a cursor returned by this API")
    return values
