"""What the PromQL of the dashboard, the alert rules and the autoscaler asks of jobsched's metrics.

The expressions are parsed (promql-parser), not searched with patterns: every series
selector and every grouping label is found wherever it sits in the expression.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import promql_parser
from prometheus_client.metrics import MetricWrapperBase

# Labels Prometheus attaches to every scraped series, whatever the process exports.
TARGET_LABELS = frozenset({"job", "instance"})
# Series Prometheus makes itself, with the labels they carry.
PROMETHEUS_SERIES = {"up": frozenset()}

# The exposed series of each metric type, by suffix, and labels the suffix adds.
_SUFFIXES: dict[str, dict[str, frozenset[str]]] = {
    "counter": {"_total": frozenset(), "_created": frozenset()},
    "gauge": {"": frozenset()},
    "histogram": {
        "_bucket": frozenset({"le"}),
        "_count": frozenset(),
        "_sum": frozenset(),
        "_created": frozenset(),
    },
    "summary": {"_count": frozenset(), "_sum": frozenset(), "_created": frozenset()},
    "info": {"_info": frozenset()},
}

# Grafana's own variables, replaced by what Grafana would put there.
_GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
}
_USER_VARIABLE = re.compile(r"\$\{?(\w+)\}?")


def exposed_series(module: ModuleType) -> dict[str, frozenset[str]]:
    """Every series name the metrics declared in ``module`` expose, with its labels."""
    series: dict[str, frozenset[str]] = {}
    for value in vars(module).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        (family,) = value.describe()
        # prometheus-client keeps a metric's label names only in this attribute.
        labels = frozenset(value._labelnames)
        for suffix, extra in _SUFFIXES[family.type].items():
            series[family.name + suffix] = labels | extra
    return series


def grafana_to_promql(expression: str) -> str:
    """``expression`` as Grafana sends it: its variables replaced by plausible values."""
    for variable, value in _GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, value)
    # A multi-value variable becomes a regular expression: `queue=~"$queue"`.
    return _USER_VARIABLE.sub(".*", expression)


@dataclass
class Usage:
    """The series an expression selects and the labels it groups or matches on."""

    selectors: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    # (labels, the series names under the aggregation or the binary operation)
    groupings: list[tuple[frozenset[str], frozenset[str]]] = field(default_factory=list)


def usage(expression: str) -> Usage:
    """Parse ``expression``; raises ``ValueError`` if it is not PromQL."""
    found = Usage()
    _walk(promql_parser.parse(expression), found)
    return found


def _walk(node: Any, found: Usage) -> frozenset[str]:
    """Record ``node``'s selectors and groupings; return the series names under it."""
    if isinstance(node, promql_parser.VectorSelector):
        return _record_selector(node, found)
    names = frozenset[str]().union(*(_walk(child, found) for child in _children(node)))
    grouping = _grouping_labels(node)
    if grouping:
        found.groupings.append((grouping, names))
    return names


def _record_selector(node: promql_parser.VectorSelector, found: Usage) -> frozenset[str]:
    matchers = node.matchers
    labels = {m.name for m in matchers.matchers}
    labels |= {m.name for group in matchers.or_matchers for m in group}
    name = node.name or ""
    found.selectors.append((name, frozenset(labels - {"__name__"})))
    return frozenset({name})


def _children(node: Any) -> list[Any]:
    if isinstance(node, promql_parser.MatrixSelector):
        return [node.vector_selector]
    if isinstance(node, promql_parser.AggregateExpr):
        return [node.expr] + ([node.param] if node.param is not None else [])
    if isinstance(node, promql_parser.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, promql_parser.Call):
        return list(node.args)
    if isinstance(
        node, (promql_parser.ParenExpr, promql_parser.UnaryExpr, promql_parser.SubqueryExpr)
    ):
        return [node.expr]
    if isinstance(node, (promql_parser.NumberLiteral, promql_parser.StringLiteral)):
        return []
    raise TypeError(f"unexpected PromQL node {type(node).__name__}: {node}")


def _grouping_labels(node: Any) -> frozenset[str]:
    """The labels of a `by (...)` / `without (...)` or an `on (...)` / `ignoring (...)`."""
    if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
        return frozenset(node.modifier.labels)
    if isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
        matching = node.modifier.matching
        return frozenset(matching.labels) if matching is not None else frozenset()
    return frozenset()


def problems(expression: str, series: dict[str, frozenset[str]]) -> Iterator[str]:
    """What ``expression`` asks that the series do not have: unknown names or labels."""
    known = {**series, **PROMETHEUS_SERIES}
    found = usage(expression)
    for name, labels in found.selectors:
        if name not in known:
            yield f"no metric {name!r}"
            continue
        unknown = labels - known[name] - TARGET_LABELS
        if unknown:
            yield f"{name} has no label {sorted(unknown)}"
    for labels, names in found.groupings:
        available = frozenset().union(*(known.get(name, frozenset()) for name in names))
        unknown = labels - available - TARGET_LABELS
        if unknown:
            yield f"grouping by {sorted(unknown)}: no such label on {sorted(names)}"
