"""Every metric and label the dashboard, the alerts and the autoscaler name is one jobsched exports.

The registry is src/jobsched/monitoring/metrics.py itself: a metric renamed there,
or a label dropped, fails here before a dashboard goes blank in production.
"""

from __future__ import annotations

import pytest

from jobsched.monitoring import metrics
from tests.deploy.dashboards import alert_rules, dashboard_queries, keda_query
from tests.deploy.promql import exposed_series, grafana_to_promql, problems, usage

SERIES = exposed_series(metrics)

EXPRESSIONS = {
    **{where: grafana_to_promql(expr) for where, expr in dashboard_queries().items()},
    **{f"alert {rule['alert']}": rule["expr"] for rule in alert_rules()},
    "KEDA ScaledObject trigger": keda_query(),
}


@pytest.mark.parametrize("where", sorted(EXPRESSIONS))
def test_the_query_names_only_metrics_and_labels_that_exist(where: str) -> None:
    assert list(problems(EXPRESSIONS[where], SERIES)) == []


def test_an_unknown_metric_or_label_is_caught() -> None:
    assert list(problems('rate(jobs_finished_total{queue="a"}[5m])', SERIES)) == [
        "no metric 'jobs_finished_total'"
    ]
    assert list(problems('sum by (queue) (rate(jobs_completed_total{host="a"}[5m]))', SERIES)) == [
        "jobs_completed_total has no label ['host']"
    ]
    assert list(problems("sum by (worker) (outbox_backlog)", SERIES)) == [
        "grouping by ['worker']: no such label on ['outbox_backlog']"
    ]
    # A counter is exposed with _total; its bare name is no series.
    assert list(problems("rate(jobs_completed[5m])", SERIES)) == ["no metric 'jobs_completed'"]


def test_the_operations_metrics_are_all_used() -> None:
    """The dashboard shows each metric that says how jobsched is doing."""
    used = {
        name
        for where, expression in EXPRESSIONS.items()
        if where.startswith(("panel", "variable"))
        for name, _ in usage(expression).selectors
    }
    assert used >= {
        "jobs_completed_total",
        "jobs_failed_total",
        "jobs_dead_total",
        "job_duration_seconds_bucket",
        "queue_depth",
        "scheduler_fire_lag_seconds_bucket",
        "outbox_backlog",
        "lease_rescues_total",
        "worker_slots_busy",
        "worker_last_heartbeat_timestamp_seconds",
        "build_info",
    }
