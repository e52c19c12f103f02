"""deploy/prometheus/alerts.yml passes `promtool check rules` and its unit tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.deploy.dashboards import ALERT_TESTS, ALERTS, alert_rules

# The alerts the operations guide promises (README, "Alerts").
PROMISED = {
    "JobschedSchedulerDown",
    "JobschedSchedulerNotFiring",
    "JobschedSchedulerLagging",
    "JobschedQueueDepthGrowing",
    "JobschedRunsDead",
    "JobschedDeadRunRateHigh",
    "JobschedNoLiveWorkers",
    "JobschedDatabaseUnreachable",
    "JobschedNotReady",
    "JobschedOutboxBacklog",
}


def _promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run `bash scripts/ensure-tools.sh` (Debian: prometheus)"
    return subprocess.run(
        [promtool, *arguments], capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_accepts_the_rules() -> None:
    checked = _promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    tested = _promtool("test", "rules", str(ALERT_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_promtool_test_fails_when_an_alert_does_not_fire_as_expected(tmp_path: Path) -> None:
    """The unit tests can fail: the same file with one expectation changed does."""
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    tests["rule_files"] = [str(ALERTS)]
    first_firing = next(
        case for test in tests["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]
    )
    first_firing["exp_alerts"] = []
    changed = tmp_path / "alerts.test.yml"
    changed.write_text(yaml.safe_dump(tests))
    assert _promtool("test", "rules", str(changed)).returncode != 0


def test_every_alert_is_unit_tested_firing_and_documented() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert set(rules) >= PROMISED
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    seen_firing = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    seen_quiet = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if not case["exp_alerts"]
    }
    assert seen_firing == set(rules)
    assert seen_quiet == set(rules)
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name
