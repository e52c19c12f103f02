"""docs/metrics.md lists exactly the metrics the code declares, with their labels and kinds."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from jobsched.monitoring import metrics

DOC = Path(__file__).parents[2] / "docs" / "metrics.md"
ROW = re.compile(r"^\| `(?P<name>[a-z_]+)` \| (?P<kind>\w+) \|(?P<labels>[^|]*)\|", re.M)
_SUFFIX = {"counter": "_total"}


def _declared() -> dict[str, tuple[str, frozenset[str]]]:
    declared = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            (family,) = value.describe()
            name = family.name + _SUFFIX.get(family.type, "")
            declared[name] = (family.type, frozenset(value._labelnames))
    return declared


def _documented() -> dict[str, tuple[str, frozenset[str]]]:
    documented = {}
    for row in ROW.finditer(DOC.read_text()):
        labels = frozenset(re.findall(r"`(\w+)`", row["labels"]))
        documented[row["name"]] = (row["kind"], labels)
    return documented


def test_every_declared_metric_is_documented_with_its_kind_and_labels() -> None:
    assert _documented() == _declared()


def test_the_readme_links_the_metrics_reference() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "docs/metrics.md" in readme
