"""``worker.http``: the http handler's allowed networks, environment allowlist and redaction."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from jobsched.cli.services import standalone_settings
from jobsched.config.settings import Settings, load_settings
from jobsched.core.errors import ConfigurationError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("JOBSCHED_"):
            monkeypatch.delenv(name)


def test_by_default_nothing_private_is_admitted() -> None:
    http = Settings().worker.http
    assert http.allowed_networks is None
    assert http.env_allowlist == []
    assert not http.network_policy().admits(ipaddress.ip_address("127.0.0.1"))


def test_allowed_networks_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "jobsched.yaml"
    path.write_text("worker:\n  http:\n    allowed_networks: [10.20.0.0/16, '::1']\n")
    policy = load_settings(path).worker.http.network_policy()
    assert policy.admits(ipaddress.ip_address("10.20.3.4"))
    assert policy.admits(ipaddress.ip_address("::1"))
    assert not policy.admits(ipaddress.ip_address("10.21.0.1"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("allowed_networks: [10.0.0.1/8]", "has host bits set"),
        ("allowed_networks: [intranet]", "not a network in CIDR notation"),
        ("redact_header_pattern: '(unclosed'", "is not a regular expression"),
    ],
)
def test_bad_values_name_the_setting(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "jobsched.yaml"
    path.write_text(f"worker:\n  http:\n    {content}\n")
    with pytest.raises(ConfigurationError, match=message) as raised:
        load_settings(path)
    assert str(raised.value).startswith("setting worker.http.")


def test_standalone_admits_loopback_unless_told_otherwise() -> None:
    admitted = standalone_settings(Settings()).worker.http.network_policy()
    assert admitted.admits(ipaddress.ip_address("127.0.0.1"))
    assert admitted.admits(ipaddress.ip_address("::1"))
    assert not admitted.admits(ipaddress.ip_address("10.0.0.1"))
    chosen = Settings(worker={"http": {"allowed_networks": []}})
    assert standalone_settings(chosen).worker.http.allowed_networks == []


def test_allowed_networks_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBSCHED_WORKER_HTTP_ALLOWED_NETWORKS", "10.20.0.0/16,127.0.0.0/8")
    monkeypatch.setenv("JOBSCHED_WORKER_HTTP_ENV_ALLOWLIST", "BILLING_API_TOKEN")
    http = load_settings().worker.http
    assert http.allowed_networks == ["10.20.0.0/16", "127.0.0.0/8"]
    assert http.env_allowlist == ["BILLING_API_TOKEN"]
