"""The notifier delivers recorded events, signed, to a real local receiver; retries; gives up."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import Iterable, Iterator

import httpcore
import pytest
import sqlalchemy as sa

from jobsched.config.settings import NotificationSettings
from jobsched.core.models import AttemptStatus, RunStatus
from jobsched.scheduler.notifier import Notifier, subscriptions
from jobsched.storage.base import AttemptOutcome
from jobsched.storage.database import SQLStorage
from jobsched.storage.schema import webhook_deliveries
from jobsched.worker.handlers.http_network import guarded_client
from tests.contract.storage_scenario import StorageScenario
from tests.webhook_receiver import WebhookReceiver

KEY = b"s" * 32
SECRET = "whsec_" + base64.b64encode(KEY).decode()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(KEY).start()
    yield receiver
    receiver.stop()


def _settings(url: str, **overrides: object) -> NotificationSettings:
    return NotificationSettings.model_validate(
        {
            "endpoints": [{"url": url, "secret": SECRET}],
            "allowed_networks": ["127.0.0.0/8"],
            "initial_delay_seconds": 0.01,
            "max_delay_seconds": 0.01,
            **overrides,
        }
    )


async def _dead_run(storage: SQLStorage, scenario: StorageScenario) -> str:
    run = await scenario.claimed_run(retry={"max_attempts": 1})
    outcome = AttemptOutcome(
        run_id=run.id,
        attempt=run.attempt,
        worker_id="worker-1",
        attempt_status=AttemptStatus.FAILED,
        run_status=RunStatus.DEAD,
        error="boom",
        result=None,
        retry_at=None,
    )
    assert await storage.finish_attempts([outcome]) == [True]
    return str(run.id)


@pytest.fixture
def scenario(storage: SQLStorage, sql: sa.Engine) -> StorageScenario:
    return StorageScenario(storage, sql)


async def test_a_dead_run_is_delivered_once_signed(
    storage: SQLStorage, scenario: StorageScenario, receiver: WebhookReceiver
) -> None:
    settings = _settings(receiver.url)
    storage.set_webhook_subscriptions(subscriptions(settings))
    run_id = await _dead_run(storage, scenario)
    connector = RecordingConnector()
    async with guarded_client(settings.network_policy(), connector=connector) as client:
        notifier = Notifier(storage, settings, client)
        assert await notifier.sweep() == 1
        assert await notifier.sweep() == 0

    assert connector.asked == [("127.0.0.1", receiver.port)]  # what the guard admits is asked
    assert receiver.bad_signatures == 0
    (event,) = receiver.events
    assert event["type"] == "run.dead"
    assert event["data"]["run_id"] == run_id
    assert event["data"]["error"] == "boom"
    assert await storage.count_webhook_backlog() == 0


async def test_a_receiver_that_was_down_gets_the_event_later(
    storage: SQLStorage, scenario: StorageScenario
) -> None:
    with socket.socket() as probe:  # a port that nothing listens on, for now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    receiver = WebhookReceiver(KEY, port)
    settings = _settings(receiver.url)
    storage.set_webhook_subscriptions(subscriptions(settings))
    run_id = await _dead_run(storage, scenario)
    async with guarded_client(settings.network_policy()) as client:
        notifier = Notifier(storage, settings, client)
        assert await notifier.sweep() == 1  # refused: retried later
        assert scenario.count(webhook_deliveries, webhook_deliveries.c.attempts == 1) == 1
        receiver.start()
        try:
            await asyncio.sleep(0.05)
            assert await notifier.sweep() == 1
        finally:
            receiver.stop()

    assert [event["data"]["run_id"] for event in receiver.events] == [run_id]


class RecordingConnector(httpcore.AsyncNetworkBackend):
    """Notes every connection asked for, then makes it."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.asked.append((host, port))
        return await self._inner.connect_tcp(host, port, timeout=timeout)


@pytest.mark.parametrize("allowed", [None, ["10.0.0.0/8"]])
async def test_a_denied_address_is_refused_before_any_connection(
    storage: SQLStorage,
    scenario: StorageScenario,
    receiver: WebhookReceiver,
    allowed: list[str] | None,
) -> None:
    settings = _settings(receiver.url, allowed_networks=allowed)
    storage.set_webhook_subscriptions(subscriptions(settings))
    await _dead_run(storage, scenario)
    connector = RecordingConnector()
    async with guarded_client(settings.network_policy(), connector=connector) as client:
        await Notifier(storage, settings, client).sweep()

    assert connector.asked == []
    assert receiver.events == []
    assert (
        scenario.count(webhook_deliveries, webhook_deliveries.c.last_error.like("%refused%")) == 1
    )


async def test_an_event_older_than_max_age_is_given_up(
    storage: SQLStorage, scenario: StorageScenario, receiver: WebhookReceiver
) -> None:
    settings = _settings(receiver.url, max_age_seconds=0.001)
    storage.set_webhook_subscriptions(subscriptions(settings))
    await _dead_run(storage, scenario)
    await asyncio.sleep(0.01)
    async with guarded_client(settings.network_policy()) as client:
        await Notifier(storage, settings, client).sweep()

    assert receiver.events == []
    assert scenario.count(webhook_deliveries, webhook_deliveries.c.given_up_at.is_not(None)) == 1
