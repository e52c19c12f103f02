"""docker-compose.yml: a valid Compose file whose mounts, scrape targets and services fit together.

No Docker daemon here: the file is checked against the Compose Specification's
schema, and what it mounts and names is checked against the repository.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import yaml

from jobsched.config.settings import WorkerSettings
from tests.deploy.manifests import REPOSITORY, SCHEMAS

COMPOSE = REPOSITORY / "docker-compose.yml"
JOBSCHED_SERVICES = ("migrate", "api", "scheduler", "worker")


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _mounts(service: str) -> dict[str, Path]:
    """Container path -> host path of each bind mount of ``service``."""
    mounts = {}
    for volume in _services()[service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            mounts[target] = (REPOSITORY / source).resolve()
    return mounts


def _host_path(service: str, container_path: str) -> Path:
    """Where ``container_path`` of ``service`` comes from in the repository."""
    for target, source in _mounts(service).items():
        path = PurePosixPath(container_path)
        if path == PurePosixPath(target) or PurePosixPath(target) in path.parents:
            return source / path.relative_to(target)
    raise AssertionError(f"{service} mounts nothing at {container_path}")


def test_the_file_follows_the_compose_specification() -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    errors = [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in jsonschema.Draft7Validator(schema).iter_errors(_compose())
    ]
    assert errors == []


def test_every_mounted_file_exists() -> None:
    mounted = [(name, source) for name in _services() for source in _mounts(name).values()]
    assert mounted
    for name, source in mounted:
        assert source.exists(), f"{name} mounts {source}, which is missing"


def test_prometheus_loads_the_alert_rules(tmp_path: Path) -> None:
    """The mounted prometheus.yml's rule_files reach alerts.yml; promtool accepts both."""
    config_path = _host_path("prometheus", "/etc/prometheus/prometheus.yml")
    config = yaml.safe_load(config_path.read_text())
    rule_files = [
        source
        for target, source in _mounts("prometheus").items()
        if any(fnmatch.fnmatch(target, pattern) for pattern in config["rule_files"])
    ]
    assert rule_files == [REPOSITORY / "deploy" / "prometheus" / "alerts.yml"]
    # The same configuration with the rule files where they are on this machine.
    config["rule_files"] = [str(path) for path in rule_files]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run `bash scripts/ensure-tools.sh` (Debian: prometheus)"
    checked = subprocess.run(
        [promtool, "check", "config", str(local)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 12 rules found" in checked.stdout + checked.stderr


def test_prometheus_scrapes_each_service_where_it_listens() -> None:
    config = yaml.safe_load(_host_path("prometheus", "/etc/prometheus/prometheus.yml").read_text())
    targets = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            targets[job["job_name"]] = static["targets"]
        for dns in job.get("dns_sd_configs", []):
            targets[job["job_name"]] = [f"{name}:{dns['port']}" for name in dns["names"]]
    assert targets == {
        "jobsched-api": ["api:8080"],
        "jobsched-scheduler": ["scheduler:9100"],
        "jobsched-worker": ["worker:9101"],
    }
    services = _services()
    for service, port in (("scheduler", "9100"), ("worker", "9101")):
        assert services[service]["environment"]["JOBSCHED_METRICS_PORT"] == port


def test_grafana_provisions_the_dashboard_from_prometheus() -> None:
    provisioning = _host_path("grafana", "/etc/grafana/provisioning")
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "jobsched.yml").read_text())[
        "providers"
    ]
    # Grafana loads every .json file under the provider's path.
    folder = PurePosixPath(provider["options"]["path"])
    loaded = [
        source
        for target, source in _mounts("grafana").items()
        if folder in PurePosixPath(target).parents and target.endswith(".json")
    ]
    assert loaded == [REPOSITORY / "deploy" / "grafana" / "jobsched.json"]
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    board = json.loads(loaded[0].read_text())
    variable = next(v for v in board["templating"]["list"] if v["name"] == "datasource")
    assert variable["current"]["value"] == source["uid"]


def test_every_service_it_starts_is_used() -> None:
    """Redis is the queue and the cache; no broker is started that nothing uses."""
    services = _services()
    assert set(services) == {*JOBSCHED_SERVICES, "postgres", "redis", "prometheus", "grafana"}
    for name in JOBSCHED_SERVICES:
        environment = services[name]["environment"]
        assert environment["JOBSCHED_DATABASE_URL"].startswith("postgresql://"), name
        assert environment["JOBSCHED_QUEUE_URL"] == "redis://redis:6379/0", name
        assert environment["JOBSCHED_CACHE_URL"] == "redis://redis:6379/0", name
    assert services["api"]["depends_on"]["redis"] == {"condition": "service_healthy"}


def test_workers_get_longer_to_stop_than_their_shutdown_grace() -> None:
    worker = _services()["worker"]
    shutdown_grace = float(
        worker["environment"].get(
            "JOBSCHED_WORKER_SHUTDOWN_GRACE_SECONDS", WorkerSettings().shutdown_grace_seconds
        )
    )
    stop_grace_period = worker["stop_grace_period"]
    assert stop_grace_period.endswith("s")
    assert float(stop_grace_period.removesuffix("s")) >= shutdown_grace + 10
