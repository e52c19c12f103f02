"""deploy/grafana/jobsched.json: a dashboard Grafana can load, with a panel for each concern."""

from __future__ import annotations

from itertools import combinations

from tests.deploy.dashboards import dashboard, dashboard_queries, panels
from tests.deploy.promql import grafana_to_promql, usage

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def test_the_dashboard_is_one_grafana_can_provision() -> None:
    board = dashboard()
    assert board["uid"] == "jobsched"
    assert board["title"] == "jobsched"
    assert isinstance(board["schemaVersion"], int)
    # Provisioned dashboards must not carry a database id.
    assert "id" not in board
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"queue", "type"} <= set(variables)
    all_panels = list(panels(board))
    ids = [panel["id"] for panel in all_panels]
    assert len(ids) == len(set(ids))
    for panel in all_panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["description"], panel["title"]
        references = [target["refId"] for target in panel["targets"]]
        assert len(references) == len(set(references)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_panels_fit_the_grid_without_overlapping() -> None:
    boxes = [(p["title"], p["gridPos"]) for p in panels(dashboard())]
    for title, box in boxes:
        assert box["x"] >= 0, title
        assert box["x"] + box["w"] <= 24, title
    for (first, a), (second, b) in combinations(boxes, 2):
        apart = (
            a["x"] + a["w"] <= b["x"]
            or b["x"] + b["w"] <= a["x"]
            or a["y"] + a["h"] <= b["y"]
            or b["y"] + b["h"] <= a["y"]
        )
        assert apart, (first, second)


def test_every_query_is_promql() -> None:
    for where, expression in dashboard_queries().items():
        try:
            usage(grafana_to_promql(expression))
        except ValueError as error:
            raise AssertionError(f"{where}: {error}") from error


def _panels_using(metric: str, grouped_by: frozenset[str] = frozenset()) -> list[str]:
    titles = []
    for panel in panels(dashboard()):
        for target in panel.get("targets", []):
            found = usage(grafana_to_promql(target["expr"]))
            names = {name for name, _ in found.selectors}
            groupings = [labels for labels, _ in found.groupings]
            if metric in names and (not grouped_by or grouped_by in groupings):
                titles.append(panel["title"])
    return titles


def test_each_concern_has_its_panel() -> None:
    by_type_and_queue = frozenset({"type", "queue"})
    assert _panels_using("jobs_completed_total", by_type_and_queue)
    assert _panels_using("jobs_failed_total", by_type_and_queue)
    assert _panels_using("jobs_dead_total", by_type_and_queue)
    assert _panels_using("job_duration_seconds_bucket", frozenset({"le"}))
    assert _panels_using("queue_depth", frozenset({"queue"}))
    assert _panels_using("scheduler_fire_lag_seconds_bucket", frozenset({"le"}))
    assert _panels_using("outbox_backlog")
    assert _panels_using("worker_last_heartbeat_timestamp_seconds")
    assert _panels_using("worker_slots_busy")
    assert _panels_using("lease_rescues_total")
