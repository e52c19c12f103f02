"""deploy/examples/custom-handlers: an image FROM jobsched's that adds handlers a worker imports."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from jobsched.config.settings import load_settings
from jobsched.worker.registry import default_registry, import_handler_modules
from tests.deploy.manifests import KUBERNETES, REPOSITORY

EXAMPLE = REPOSITORY / "deploy" / "examples" / "custom-handlers"


def _dockerfile_environment() -> dict[str, str]:
    return dict(re.findall(r"^ENV (\w+)=(\S+)$", (EXAMPLE / "Dockerfile").read_text(), re.M))


def test_the_image_builds_on_the_jobsched_image_of_this_release() -> None:
    dockerfile = (EXAMPLE / "Dockerfile").read_text()
    version = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]["version"]
    assert re.findall(r"^FROM (\S+)$", dockerfile, re.M) == [f"jobsched:{version}"]
    base = (KUBERNETES / "base" / "kustomization.yaml").read_text()
    assert f"newTag: {version}" in base
    # Installs as root, then runs as the base image's unprivileged user again.
    assert re.findall(r"^USER (\S+)$", dockerfile, re.M) == ["root", "jobsched"]


def test_a_worker_with_the_image_settings_registers_the_example_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What `jobsched worker` does at start, with the environment the image sets."""
    # The package as the image installs it: its src/ on the path.
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    monkeypatch.delitem(sys.modules, "acme_handlers", raising=False)
    # The example registers on the process-wide registry: undo that afterwards.
    monkeypatch.setattr(default_registry, "_handlers", dict(default_registry._handlers))
    monkeypatch.setattr(default_registry, "_options", dict(default_registry._options))
    for variable, value in _dockerfile_environment().items():
        monkeypatch.setenv(variable, value)
    settings = load_settings(None)
    assert settings.worker.imports == ["acme_handlers"]
    assert "acme.report" not in default_registry

    import_handler_modules(settings.worker.imports)

    assert "acme.report" in default_registry
    handler = default_registry.lookup("acme.report")
    context = SimpleNamespace(logger=logging.getLogger("acme"))
    assert asyncio.run(handler({"report": "daily-sales"}, context)) == {  # type: ignore[arg-type]
        "report": "daily-sales",
        "rows": 0,
    }
    unknown = sys.modules["acme_handlers"].UnknownReportError("x")
    assert not default_registry.options("acme.report").is_retryable(unknown)


def test_the_package_provides_what_the_image_imports() -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    (package,) = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert Path(package).name == _dockerfile_environment()["JOBSCHED_WORKER_IMPORTS"]
    assert (EXAMPLE / package / "__init__.py").exists()
