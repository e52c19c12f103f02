"""The worker's settings: heartbeats against leases, the shell section, the GIL interval."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobsched.config.settings import ShellSettings, WorkerSettings, load_settings
from jobsched.core.errors import ConfigurationError


def test_defaults_beat_often_enough_to_notice_cancellations_quickly() -> None:
    settings = WorkerSettings()
    assert (settings.lease_seconds, settings.heartbeat_interval_seconds) == (30.0, 2.0)
    assert settings.gil_switch_interval_seconds == 0.001
    assert settings.shell == ShellSettings()


@pytest.mark.parametrize(("lease", "heartbeat"), [(3.0, 1.0), (30.0, 10.0), (1.0, 0.2)])
def test_a_lease_of_three_heartbeats_or_more_is_accepted(lease: float, heartbeat: float) -> None:
    WorkerSettings(lease_seconds=lease, heartbeat_interval_seconds=heartbeat)


@pytest.mark.parametrize(("lease", "heartbeat"), [(2.0, 1.0), (30.0, 11.0), (1.0, 60.0)])
def test_a_lease_shorter_than_three_heartbeats_is_refused(lease: float, heartbeat: float) -> None:
    with pytest.raises(ValidationError, match="must be at least 3 times"):
        WorkerSettings(lease_seconds=lease, heartbeat_interval_seconds=heartbeat)


def test_environment_sets_the_shell_section_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBSCHED_WORKER_SHELL", '{"enabled": true, "env_allowlist": ["PATH"]}')
    shell = load_settings().worker.shell
    assert (shell.enabled, shell.env_allowlist, shell.output_bytes_max) == (True, ["PATH"], 8192)


def test_environment_lease_too_short_for_the_heartbeat_names_the_section(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBSCHED_WORKER_LEASE_SECONDS", "3")
    monkeypatch.setenv("JOBSCHED_WORKER_HEARTBEAT_INTERVAL_SECONDS", "2")
    with pytest.raises(ConfigurationError, match=r"setting worker: .*at least 3 times"):
        load_settings()
