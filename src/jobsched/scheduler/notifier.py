"""Delivery of webhook notifications: the sweep of the ``webhook_deliveries`` outbox.

Each sweep claims due deliveries (replicas share them: claimed rows are held, and
SKIP LOCKED on PostgreSQL), posts each, signed per Standard Webhooks, to its
endpoint, and marks it delivered (2xx), retries it later with exponential backoff,
or gives it up once older than ``max_age_seconds``. The HTTP client is given by the
caller: the CLI passes one that connects only where the network policy admits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

import httpx

from jobsched.config.settings import NotificationEndpoint, NotificationSettings
from jobsched.core.models import RetryPolicy
from jobsched.core.retry import backoff_delay_seconds
from jobsched.core.webhooks import Delivery, Subscription, event_body, signed_headers
from jobsched.monitoring.metrics import NOTIFICATIONS_BACKLOG, NOTIFICATIONS_SENT

logger = logging.getLogger(__name__)


class DeliveryStorage(Protocol):
    """The part of ``SQLStorage`` (``storage.sql_webhooks``) the notifier uses."""

    def set_webhook_subscriptions(self, subscriptions: Sequence[Subscription]) -> None: ...

    async def claim_webhook_deliveries(self, limit: int, hold_seconds: float) -> list[Delivery]: ...

    async def mark_webhook_delivered(self, delivery_id: uuid.UUID) -> None: ...

    async def give_up_webhook_delivery(self, delivery_id: uuid.UUID, error: str) -> None: ...

    async def retry_webhook_delivery(
        self, delivery_id: uuid.UUID, *, delay_seconds: float, error: str
    ) -> None: ...

    async def count_webhook_backlog(self) -> int: ...


def subscriptions(settings: NotificationSettings) -> list[Subscription]:
    """What storage records for ``settings``' endpoints."""
    return [
        Subscription(
            endpoint=endpoint.url,
            events=frozenset(endpoint.events),
            queues=None if endpoint.queues is None else frozenset(endpoint.queues),
            types=None if endpoint.types is None else frozenset(endpoint.types),
        )
        for endpoint in settings.endpoints
    ]


class Notifier:
    """A service (``run``/``request_stop``) sweeping the deliveries every ``interval_seconds``."""

    def __init__(
        self, storage: DeliveryStorage, settings: NotificationSettings, client: httpx.AsyncClient
    ) -> None:
        self._stop = asyncio.Event()
        self._storage = storage
        self._settings = settings
        self._client = client
        self._endpoints: dict[str, tuple[NotificationEndpoint, bytes]] = {
            endpoint.url: (endpoint, endpoint.signing_key()) for endpoint in settings.endpoints
        }
        self._backoff = RetryPolicy(
            max_attempts=1000,
            backoff="exponential",
            initial_delay_seconds=settings.initial_delay_seconds,
            max_delay_seconds=settings.max_delay_seconds,
            jitter=False,
        )

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.sweep()
            except Exception:
                logger.exception("notification sweep failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._settings.interval_seconds)

    async def sweep(self) -> int:
        """Try every due delivery once; how many were tried."""
        hold = self._settings.timeout_seconds + 5.0
        due = await self._storage.claim_webhook_deliveries(self._settings.batch_size, hold)
        await asyncio.gather(*(self._deliver(delivery) for delivery in due))
        NOTIFICATIONS_BACKLOG.set(await self._storage.count_webhook_backlog())
        return len(due)

    async def _deliver(self, delivery: Delivery) -> None:
        configured = self._endpoints.get(delivery.endpoint)
        age = (datetime.now(UTC) - delivery.created_at).total_seconds()
        if configured is None or age > self._settings.max_age_seconds:
            reason = (
                "endpoint no longer configured"
                if configured is None
                else f"not delivered within {self._settings.max_age_seconds:g} s"
            )
            logger.warning(
                "giving up notification %s (%s) to %s: %s",
                delivery.id,
                delivery.event_type,
                delivery.endpoint,
                reason,
            )
            await self._storage.give_up_webhook_delivery(delivery.id, reason)
            NOTIFICATIONS_SENT.labels(outcome="given_up").inc()
            return
        _, key = configured
        body = event_body(delivery.event_type, delivery.created_at, delivery.data)
        timestamp = int(datetime.now(UTC).timestamp())
        headers = signed_headers(key, f"msg_{delivery.id.hex}", timestamp, body)
        error = await self._post(delivery.endpoint, headers, body)
        if error is None:
            await self._storage.mark_webhook_delivered(delivery.id)
            NOTIFICATIONS_SENT.labels(outcome="delivered").inc()
            return
        delay = backoff_delay_seconds(self._backoff, delivery.attempts + 1)
        logger.info(
            "notification %s to %s failed (%s); retrying in %.1f s",
            delivery.id,
            delivery.endpoint,
            error,
            delay,
        )
        await self._storage.retry_webhook_delivery(delivery.id, delay_seconds=delay, error=error)
        NOTIFICATIONS_SENT.labels(outcome="failed").inc()

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> str | None:
        """None once the receiver answered 2xx; else what went wrong."""
        try:
            response = await self._client.post(
                url, content=body, headers=headers, timeout=self._settings.timeout_seconds
            )
        except Exception as error:  # refused address, connection, timeout: retried alike
            return f"{type(error).__name__}: {error}"[:2000]
        if response.is_success:
            return None
        return f"HTTP {response.status_code}"
