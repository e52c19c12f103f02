"""Where the Redis Streams queue keeps things: every key, named from the namespace.

``{namespace}:stream:{queue}:{level}``  one stream per queue and priority level
``{namespace}:workers``                 the consumer group on every stream
``{namespace}:dead``                    the dead-letter trail (capped, for inspection)
``{namespace}:epoch``                   the marker that reveals a broker which lost its data

Three levels stand for the integer priorities: ``high`` (> 0), ``normal`` (0) and
``low`` (< 0). Within a level entries are first in, first out; workers read the
levels in that order, so a ``high`` run never waits behind a ``normal`` one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PRIORITY_LEVELS = ("high", "normal", "low")
_GLOB_SPECIAL = frozenset("*?[]\\")


def priority_level(priority: int) -> str:
    """The level a run of this ``priority`` is published on."""
    if priority > 0:
        return "high"
    if priority < 0:
        return "low"
    return "normal"


def escape_glob(text: str) -> str:
    """``text`` matched literally by a ``SCAN MATCH`` pattern."""
    return "".join(
        f"\\{character}" if character in _GLOB_SPECIAL else character for character in text
    )


@dataclass(frozen=True, slots=True)
class RedisKeys:
    namespace: str

    @property
    def group(self) -> str:
        return f"{self.namespace}:workers"

    @property
    def dead_letters(self) -> str:
        return f"{self.namespace}:dead"

    @property
    def epoch(self) -> str:
        return f"{self.namespace}:epoch"

    @property
    def stream_prefix(self) -> str:
        return f"{self.namespace}:stream:"

    def stream(self, queue: str, level: str) -> str:
        return f"{self.stream_prefix}{queue}:{level}"

    def streams_by_priority(self, queues: Iterable[str]) -> list[str]:
        """Every stream of ``queues``: all ``high`` ones first, then ``normal``, then ``low``."""
        unique_queues = list(dict.fromkeys(queues))
        return [self.stream(queue, level) for level in PRIORITY_LEVELS for queue in unique_queues]

    def queue_of_stream(self, key: str) -> str | None:
        """The queue name a stream key belongs to; None for a key that is not one of ours."""
        if not key.startswith(self.stream_prefix):
            return None
        queue, _, level = key[len(self.stream_prefix) :].rpartition(":")
        return queue if queue and level in PRIORITY_LEVELS else None

    def streams_pattern(self) -> str:
        return escape_glob(self.stream_prefix) + "*"

    def namespace_pattern(self) -> str:
        """Every key of this namespace, and no key of a namespace that merely starts alike."""
        return escape_glob(self.namespace) + ":*"
