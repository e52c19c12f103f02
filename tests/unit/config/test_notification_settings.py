"""The ``notifications`` section: endpoints, secrets, filters and the network guard."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

import pytest
from pydantic import ValidationError

from jobsched.config.settings import NotificationEndpoint, NotificationSettings
from jobsched.core.errors import ConfigurationError

KEY = b"k" * 32
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def test_an_endpoint_wants_dead_runs_by_default() -> None:
    endpoint = NotificationEndpoint(url="https://hooks.example/x", secret=SECRET)

    assert endpoint.events == ["run.dead"]
    assert endpoint.wants("run.dead", "default", "http")
    assert not endpoint.wants("run.retrying", "default", "http")
    assert endpoint.signing_key() == KEY


def test_filters_by_queue_and_type() -> None:
    endpoint = NotificationEndpoint(
        url="https://hooks.example/x", secret=SECRET, queues=["billing"], types=["shell"]
    )

    assert endpoint.wants("run.dead", "billing", "shell")
    assert not endpoint.wants("run.dead", "default", "shell")
    assert not endpoint.wants("run.dead", "billing", "http")


@pytest.mark.parametrize(
    "fields",
    [
        {"url": "https://h.example/", "secret": "plain"},
        {"url": "https://h.example/"},
        {"url": "https://h.example/", "secret": SECRET, "secret_file": "/x"},
        {"url": "ftp://h.example/", "secret": SECRET},
        {"url": "https://h.example/", "secret": SECRET, "events": ["run.done"]},
    ],
)
def test_a_bad_endpoint_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        NotificationEndpoint.model_validate(fields)


def test_a_secret_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n", encoding="utf-8")

    endpoint = NotificationEndpoint(url="https://h.example/", secret_file=path)

    assert endpoint.signing_key() == KEY


def test_an_unreadable_secret_file_is_a_configuration_error(tmp_path: Path) -> None:
    endpoint = NotificationEndpoint(url="https://h.example/", secret_file=tmp_path / "none")

    with pytest.raises(ConfigurationError):
        endpoint.signing_key()


def test_storage_records_only_the_event_types_some_endpoint_wants() -> None:
    settings = NotificationSettings(
        endpoints=[
            NotificationEndpoint(url="https://a.example/", secret=SECRET),
            NotificationEndpoint(
                url="https://b.example/", secret=SECRET, events=["job.fire_skipped"]
            ),
        ]
    )

    assert settings.event_types() == {"run.dead", "job.fire_skipped"}
    assert NotificationSettings().event_types() == frozenset()


def test_loopback_is_refused_unless_allowed() -> None:
    loopback = ipaddress.ip_address("127.0.0.1")

    assert not NotificationSettings().network_policy().admits(loopback)
    assert NotificationSettings(allowed_networks=["127.0.0.0/8"]).network_policy().admits(loopback)


def test_allowed_networks_must_be_cidrs() -> None:
    with pytest.raises(ValidationError):
        NotificationSettings(allowed_networks=["not-a-network"])


def test_an_endpoint_url_may_appear_once() -> None:
    endpoint = {"url": "https://a.example/", "secret": SECRET}

    with pytest.raises(ValidationError, match="once"):
        NotificationSettings.model_validate({"endpoints": [endpoint, endpoint]})
