"""README's Operations section: its commands and paths work as written."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.deploy.dashboards import ALERTS, alert_rules
from tests.deploy.manifests import REPOSITORY, render, validation_errors

README = (REPOSITORY / "README.md").read_text()
OPERATIONS = README[README.index("## Operations") : README.index("## Architecture")]
APPLY = " | kubectl apply -f -"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", OPERATIONS, re.S)


def test_the_prometheus_rule_command_makes_a_valid_prometheus_rule() -> None:
    (command,) = [
        line for block in _blocks("bash") if "PrometheusRule" in block for line in [block.strip()]
    ]
    assert command.endswith(APPLY)
    made = subprocess.run(
        ["bash", "-c", command.removesuffix(APPLY)],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    rule = yaml.safe_load(made.stdout)
    assert validation_errors(rule) == []
    assert [r for group in rule["spec"]["groups"] for r in group["rules"]] == alert_rules()
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


def test_every_overlay_the_readme_applies_renders() -> None:
    directories = set(re.findall(r"kubectl (?:apply -k|kustomize) ([\w/.-]+)", OPERATIONS))
    assert directories >= {
        "deploy/kubernetes/overlays/database-queue",
        "deploy/kubernetes/overlays/redis-queue",
        "deploy/examples/custom-handlers/kubernetes",
    }
    for directory in directories:
        assert render(REPOSITORY / directory), directory


def test_every_path_it_names_exists() -> None:
    paths = set(re.findall(r"(?<![\w/])((?:deploy|config|tests|scripts)/[\w./-]*\w)", OPERATIONS))
    assert len(paths) >= 8
    missing = sorted(path for path in paths if not (REPOSITORY / path).exists())
    assert missing == []


def test_the_dockerfile_shown_is_the_example_s() -> None:
    (shown,) = _blocks("dockerfile")
    example = (REPOSITORY / "deploy" / "examples" / "custom-handlers" / "Dockerfile").read_text()
    instructions = [line for line in example.splitlines() if line and not line.startswith("#")]
    assert shown.splitlines() == instructions
