"""Standard Webhooks signing (https://www.standardwebhooks.com/), pure and I/O-free.

A secret is written ``whsec_<base64>``; the signature of a message is ``v1,`` and the
base64 HMAC-SHA256, under the decoded secret, of ``{id}.{timestamp}.{body}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
SIGNATURE_VERSION = "v1"
EVENT_TYPES = ("run.dead", "run.retrying", "job.fire_skipped")


def decode_secret(secret: str) -> bytes:
    """The key bytes of a ``whsec_<base64>`` secret; ValueError when malformed."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret is written {SECRET_PREFIX}<base64>")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as error:
        raise ValueError("a webhook secret's key is not valid base64") from error
    if len(key) < 16:
        raise ValueError("a webhook secret's key must be at least 16 bytes")
    return key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of one message."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def verify(key: bytes, headers: Mapping[str, str], body: bytes) -> bool:
    """Whether any ``v1`` signature of ``headers`` matches ``body`` (for receivers, tests)."""
    try:
        message_id = headers["webhook-id"]
        timestamp = int(headers["webhook-timestamp"])
        signatures = headers["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    expected = sign(key, message_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


def event_body(event_type: str, occurred_at: datetime, data: Mapping[str, Any]) -> bytes:
    """The compact JSON body of one event: ``type``, ``timestamp`` and ``data``."""
    document = {"type": event_type, "timestamp": occurred_at.isoformat(), "data": dict(data)}
    return json.dumps(document, separators=(",", ":"), default=str).encode()


def signed_headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers plus the content type."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, message_id, timestamp, body),
    }


@dataclass(frozen=True)
class Subscription:
    """Which events one endpoint wants: storage records a delivery for each match."""

    endpoint: str
    events: frozenset[str]
    queues: frozenset[str] | None = None
    types: frozenset[str] | None = None

    def wants(self, event_type: str, queue: str, job_type: str) -> bool:
        return (
            event_type in self.events
            and (self.queues is None or queue in self.queues)
            and (self.types is None or job_type in self.types)
        )


@dataclass(frozen=True)
class Delivery:
    """One event due to one endpoint, as the delivery sweep reads it back."""

    id: uuid.UUID
    endpoint: str
    event_type: str
    data: dict[str, Any]
    created_at: datetime
    attempts: int
