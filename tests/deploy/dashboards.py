"""The PromQL that ships: the Grafana dashboard's queries, the alert rules, the KEDA trigger."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.manifests import COMPONENTS, REPOSITORY

DASHBOARD = REPOSITORY / "deploy" / "grafana" / "jobsched.json"
ALERTS = REPOSITORY / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = Path(__file__).resolve().parent / "prometheus" / "alerts.test.yml"
SCALED_OBJECT = COMPONENTS / "keda" / "scaled-object.yaml"


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in container.get("panels", []):
        yield panel
        yield from panels(panel)


def dashboard_queries() -> dict[str, str]:
    """Each query of the dashboard (panel targets and variable queries), by where it is."""
    queries = {}
    for panel in panels(dashboard()):
        for target in panel.get("targets", []):
            queries[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(metric, label) is Grafana's, not PromQL: check its metric.
            metric, label = variable["query"]["query"].removeprefix("label_values(")[:-1].split(",")
            queries[f"variable {variable['name']!r}"] = f"count by ({label.strip()}) ({metric})"
    return queries


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def keda_query() -> str:
    (trigger,) = yaml.safe_load(SCALED_OBJECT.read_text())["spec"]["triggers"]
    query: str = trigger["metadata"]["query"]
    return query
