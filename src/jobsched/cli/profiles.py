"""Where a client command sends its requests: ``--url``/``--token``, the environment, profiles.

The user config file (``$JOBSCHED_CLI_CONFIG``, else ``$XDG_CONFIG_HOME/jobsched/cli.yaml``,
else ``~/.config/jobsched/cli.yaml``) names profiles::

    default_profile: staging
    profiles:
      staging: {url: https://jobsched.staging.example, token_file: ~/.jobsched-staging}
      prod:    {url: https://jobsched.example, token: ...}

The first of these wins: the flag; the profile named by ``--profile``; the
environment (``JOBSCHED_URL``, ``JOBSCHED_TOKEN``); the profile named by
``$JOBSCHED_PROFILE`` or ``default_profile``; the default URL and no token.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from jobsched.cli.client_errors import CliError
from jobsched.client.transport import DEFAULT_URL

_PROFILE_KEYS = frozenset({"url", "token", "token_file"})


@dataclass(frozen=True, slots=True)
class Target:
    """The API a command talks to, and where its token came from (for error messages)."""

    url: str
    token: str | None
    token_source: str


def config_path() -> Path:
    explicit = os.environ.get("JOBSCHED_CLI_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "jobsched" / "cli.yaml"


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise CliError(f"cannot read the CLI config {path}: {error.strerror}") from error
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else "?"
        raise CliError(f"{path}: line {line}: {error.problem}") from error
    except yaml.YAMLError as error:
        raise CliError(f"{path}: not YAML: {error}") from error
    if data is None:
        return {}
    profiles = data.get("profiles", {}) if isinstance(data, dict) else None
    if not isinstance(profiles, dict):
        raise CliError(f"{path}: expected a mapping with 'profiles: {{name: {{url, token}}}}'")
    for name, profile in profiles.items():
        unknown = set(profile) - _PROFILE_KEYS if isinstance(profile, dict) else None
        if unknown is None or unknown:
            raise CliError(
                f"{path}: profile {name!r} may set only url, token and token_file"
                + (f" (not {', '.join(sorted(unknown))})" if unknown else "")
            )
    return dict(data)


def _profile(
    data: Mapping[str, Any], name: str, path: Path, setting: str
) -> tuple[str, dict[str, Any]]:
    profiles: dict[str, Any] = data.get("profiles") or {}
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        where = f"{path}" if path.exists() else f"{path} (no such file)"
        raise CliError(f"unknown profile {name!r} ({setting}); profiles in {where}: {known}")
    return name, dict(profiles[name] or {})


def _profile_token(profile: dict[str, Any], name: str, path: Path) -> str | None:
    if profile.get("token"):
        return str(profile["token"])
    if profile.get("token_file"):
        token_file = Path(str(profile["token_file"])).expanduser()
        try:
            return token_file.read_text().strip() or None
        except OSError as error:
            raise CliError(
                f"profile {name!r} in {path}: cannot read token_file {token_file}: {error.strerror}"
            ) from error
    return None


def resolve_target(url: str | None, token: str | None, profile: str | None) -> Target:
    path = config_path()
    data = _load(path)
    chosen: tuple[str, dict[str, Any]] | None = None
    background: tuple[str, dict[str, Any]] | None = None
    if profile:
        chosen = _profile(data, profile, path, "--profile")
    elif os.environ.get("JOBSCHED_PROFILE"):
        background = _profile(data, os.environ["JOBSCHED_PROFILE"], path, "JOBSCHED_PROFILE")
    elif data.get("default_profile"):
        background = _profile(data, str(data["default_profile"]), path, "default_profile")

    urls: list[tuple[str | None, str]] = [(url, "--url")]
    tokens: list[tuple[str | None, str]] = [(token, "--token")]
    environment = ("", {"url": os.environ.get("JOBSCHED_URL")})
    for layer in (chosen, environment, background):
        if layer is None:
            continue
        name, values = layer
        if layer is environment:
            urls.append((values["url"], "JOBSCHED_URL"))
            tokens.append((os.environ.get("JOBSCHED_TOKEN"), "JOBSCHED_TOKEN"))
            continue
        source = f"profile {name!r} of {path}"
        urls.append((values.get("url"), source))
        tokens.append((_profile_token(values, name, path), source))
    chosen_url = next((value for value, _ in urls if value), DEFAULT_URL)
    chosen_token, token_source = next(
        ((value, source) for value, source in tokens if value), (None, "no token")
    )
    return Target(chosen_url.rstrip("/"), chosen_token, token_source)
