"""Names, queue arguments and message priorities of the RabbitMQ queue: pure functions, no I/O.

Every name starts with the configured namespace, so several deployments (or test
runs) share one vhost without touching each other's queues:

* exchange ``{ns}.runs`` (direct) routes each run, by its jobsched queue name, to
  the durable queue ``{ns}.runs.{queue}``;
* exchange ``{ns}.dead`` (fanout) and the durable queue ``{ns}.dead`` collect the
  deliveries of dead runs (run queues name it as ``x-dead-letter-exchange``);
* queue ``{ns}.sentinel`` holds one persistent message whose disappearance shows
  the broker lost its state (see ``RabbitMQQueue.lost_messages_since_last_check``).

Run queues live under ``{ns}.runs.`` rather than directly under ``{ns}.`` so that
no jobsched queue name (``dead`` and ``sentinel`` are valid ones) can collide with
the backend's own queues.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Literal

QueueType = Literal["classic", "quorum"]
QueueTypeSetting = Literal["auto", "classic", "quorum"]

# AMQP priorities used: 0..9. Classic queues keep one internal sub-queue per level,
# so the fewer the cheaper; ten levels is RabbitMQ's own recommended ceiling.
MAX_AMQP_PRIORITY = 9
# The AMQP priority of jobsched priority 0. RabbitMQ 4 quorum queues know two levels:
# "normal" (0-4, or none) and "high" (5 and above); centring 0 on 4 keeps default
# runs normal there, and makes every positive priority high.
NORMAL_AMQP_PRIORITY = 4
# |priority| at which each further AMQP step begins: 1-2, 3-9, 10-29, 30-99, 100+.
# Logarithmic, because users pick priorities like 1, 5, 10, 50, 100, not 37 and 38.
_PRIORITY_STEP_STARTS = (1, 3, 10, 30, 100)
# Quorum queues honour message priorities from RabbitMQ 4.0 on.
QUORUM_PRIORITIES_SINCE = (4, 0)
_MAX_NAME_BYTES = 255  # AMQP short string


def amqp_priority(priority: int) -> int:
    """The AMQP message priority (0..9) of a jobsched priority: monotonic, 0 maps to 4.

    Positive priorities map to 5..9 and negative ones to 3..0 in logarithmic steps;
    the exact jobsched order is restored when a claim sorts the runs it got.
    """
    steps = bisect.bisect_right(_PRIORITY_STEP_STARTS, abs(priority))
    if priority >= 0:
        return min(NORMAL_AMQP_PRIORITY + steps, MAX_AMQP_PRIORITY)
    return max(NORMAL_AMQP_PRIORITY - steps, 0)


def parse_server_version(version: object) -> tuple[int, ...]:
    """``(3, 10, 8)`` from the ``version`` server property; ``(0,)`` if it is unreadable."""
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    match = re.match(r"\d+(?:\.\d+)*", str(version or ""))
    return tuple(int(part) for part in match.group().split(".")) if match else (0,)


def choose_queue_type(setting: QueueTypeSetting, server_version: tuple[int, ...]) -> QueueType:
    """The queue type to declare: the configured one, or for ``auto`` one honouring priorities.

    Quorum queues are replicated (the safe choice in a cluster) but ignore message
    priorities before RabbitMQ 4.0, where classic queues with ``x-max-priority``
    are the only way to let urgent runs overtake; ``auto`` therefore picks quorum
    only on 4.0 and later. Unknown versions count as old.
    """
    if setting != "auto":
        return setting
    return "quorum" if server_version >= QUORUM_PRIORITIES_SINCE else "classic"


def _fit_name(name: str) -> str:
    """``name`` itself, or if longer than AMQP allows a prefix of it made unique by a hash."""
    encoded = name.encode("utf-8")
    if len(encoded) <= _MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:16]
    prefix = encoded[: _MAX_NAME_BYTES - len(digest) - 1].decode("utf-8", "ignore")
    return f"{prefix}~{digest}"


@dataclass(frozen=True, slots=True)
class Topology:
    """The exchanges and queues of one namespace, declared with one queue type."""

    namespace: str
    queue_type: QueueType

    @property
    def run_exchange(self) -> str:
        return f"{self.namespace}.runs"

    @property
    def dead_exchange(self) -> str:
        return f"{self.namespace}.dead"

    @property
    def dead_queue(self) -> str:
        return f"{self.namespace}.dead"

    @property
    def sentinel_queue(self) -> str:
        return f"{self.namespace}.sentinel"

    def run_queue(self, queue: str) -> str:
        """The broker queue holding the runs of jobsched queue ``queue``."""
        return _fit_name(f"{self.namespace}.runs.{queue}")

    def run_queue_arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "x-queue-type": self.queue_type,
            "x-dead-letter-exchange": self.dead_exchange,
        }
        if self.queue_type == "classic":
            arguments["x-max-priority"] = MAX_AMQP_PRIORITY
        # Quorum queues take no x-max-priority: 3.x refuses it, 4.x has fixed levels.
        return arguments

    def dead_queue_arguments(self) -> dict[str, Any]:
        return {"x-queue-type": self.queue_type}

    @staticmethod
    def sentinel_queue_arguments() -> dict[str, Any]:
        # One message, never consumed: replication would buy nothing.
        return {"x-queue-type": "classic"}
