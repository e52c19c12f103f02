"""Identifiers: UUIDv7, so ids sort by creation time and index well."""

from __future__ import annotations

import os
import threading
import time
import uuid

_RANDOM_BITS = 74  # rand_a (12 bits) and rand_b (62 bits) together
_RANDOM_MASK = (1 << _RANDOM_BITS) - 1
_RAND_B_MASK = (1 << 62) - 1

# The last (milliseconds, randomness) pair handed out, packed as one integer.
_last_issued = 0
_last_issued_lock = threading.Lock()


def new_id() -> uuid.UUID:
    """Return a fresh UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then randomness.

    Ids made by one process strictly increase, even within one millisecond (the
    randomness of the previous id plus one, RFC 9562 section 6.2 method 2), so
    "order by id" is creation order — list endpoints rely on it.
    """
    global _last_issued  # noqa: PLW0603  # the process-wide monotonic counter
    unix_ms = (time.time_ns() // 1_000_000) & 0xFFFF_FFFF_FFFF
    candidate = (unix_ms << _RANDOM_BITS) | int.from_bytes(os.urandom(10), "big") & _RANDOM_MASK
    with _last_issued_lock:
        # A carry out of the randomness moves the timestamp one millisecond ahead.
        issued = max(candidate, _last_issued + 1)
        _last_issued = issued
    timestamp, random_bits = issued >> _RANDOM_BITS, issued & _RANDOM_MASK
    value = (timestamp & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version 7
    value |= (random_bits >> 62) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # RFC 4122 variant
    value |= random_bits & _RAND_B_MASK  # rand_b, 62 bits
    return uuid.UUID(int=value)
