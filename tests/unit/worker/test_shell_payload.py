"""Validation of ``shell`` payloads and the environment a command gets (no process started)."""

from __future__ import annotations

from typing import Any

import pytest

from jobsched.config.settings import ShellSettings
from jobsched.worker.errors import InvalidPayloadError
from jobsched.worker.handlers.shell import ShellCommand, parse_shell_payload

ALLOWLIST = ["PATH", "TZ"]
WORKER_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/root", "JOBSCHED_DATABASE_URL": "secret"}


def parse(payload: dict[str, Any]) -> ShellCommand:
    return parse_shell_payload(payload, env_allowlist=ALLOWLIST, worker_env=WORKER_ENV)


def test_minimal_payload() -> None:
    assert parse({"command": ["ls", "-l"]}) == ShellCommand(
        argv=["ls", "-l"], cwd=None, env={"PATH": "/usr/bin:/bin"}, timeout_seconds=None
    )


def test_full_payload() -> None:
    command = parse(
        {
            "command": ["date"],
            "cwd": "/srv/reports",
            "env": {"TZ": "Asia/Tokyo"},
            "timeout_seconds": 5,
        }
    )
    assert command == ShellCommand(
        argv=["date"],
        cwd="/srv/reports",
        env={"PATH": "/usr/bin:/bin", "TZ": "Asia/Tokyo"},
        timeout_seconds=5.0,
    )


def test_payload_env_overrides_the_workers_value() -> None:
    assert parse({"command": ["x"], "env": {"PATH": "/opt/bin"}}).env == {"PATH": "/opt/bin"}


def test_worker_variables_outside_the_allowlist_are_never_passed() -> None:
    env = parse({"command": ["env"]}).env
    assert "JOBSCHED_DATABASE_URL" not in env
    assert "HOME" not in env


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({}, "command", "is required"),
        ({"command": "ls -l"}, "command", "must be a non-empty list of strings"),
        ({"command": []}, "command", "must be a non-empty list of strings"),
        ({"command": ["ls", 3]}, "command.1", "must be a string without NUL"),
        ({"command": ["ls", "a\x00b"]}, "command.1", "must be a string without NUL"),
        ({"command": [""]}, "command.0", "must name a program"),
        ({"command": ["ls"], "cwd": ""}, "cwd", "must be a non-empty path"),
        ({"command": ["ls"], "cwd": 7}, "cwd", "must be a non-empty path"),
        ({"command": ["ls"], "env": ["TZ=UTC"]}, "env", "must be an object"),
        ({"command": ["ls"], "env": {"HOME": "/x"}}, "env.HOME", "is not in this worker's"),
        ({"command": ["ls"], "env": {"TZ": 1}}, "env.TZ", "must be a string without NUL"),
        ({"command": ["ls"], "timeout_seconds": 0}, "timeout_seconds", "greater than 0"),
        ({"command": ["ls"], "timeout_seconds": "5"}, "timeout_seconds", "a number"),
        ({"command": ["ls"], "timeout_seconds": True}, "timeout_seconds", "a number"),
        ({"command": ["ls"], "stdin": "data"}, "stdin", "unknown key"),
    ],
)
def test_bad_payloads_name_the_key_at_fault(
    payload: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidPayloadError, match=message) as raised:
        parse(payload)
    assert raised.value.field == field


def test_shell_is_off_by_default_with_a_short_allowlist() -> None:
    settings = ShellSettings()
    assert settings.enabled is False
    assert settings.env_allowlist == ["PATH", "HOME", "LANG", "LC_ALL", "TZ"]
    assert settings.output_bytes_max == 8192
