"""deploy/kubernetes/: every overlay renders, satisfies the Kubernetes schemas, and runs safely."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from jobsched.config.settings import Settings, WorkerSettings
from tests.deploy.manifests import (
    COMPONENTS,
    OVERLAYS,
    REPOSITORY,
    Resource,
    container_environment,
    find,
    pod_spec,
    render,
    render_with_components,
    validation_errors,
)

EXAMPLE = REPOSITORY / "deploy" / "examples" / "custom-handlers" / "kubernetes"
BOTH_COMPONENTS = (COMPONENTS / "keda", COMPONENTS / "servicemonitor")

# Each way the manifests are meant to be deployed: the two overlays as shipped, each
# with the optional components added, and the custom-handlers example.
RENDERINGS: dict[str, tuple[Path, tuple[Path, ...]]] = {
    "database-queue": (OVERLAYS / "database-queue", ()),
    "redis-queue": (OVERLAYS / "redis-queue", ()),
    "database-queue+components": (OVERLAYS / "database-queue", BOTH_COMPONENTS),
    "redis-queue+components": (OVERLAYS / "redis-queue", BOTH_COMPONENTS),
    "custom-handlers-example": (EXAMPLE, ()),
}

# What each Deployment's probes must reach: container port and its number.
SERVICE_PORTS = {
    "jobsched-api": ("http", 8080),
    "jobsched-scheduler": ("metrics", 9100),
    "jobsched-worker": ("metrics", 9101),
}
WORKLOAD_KINDS = ("Deployment", "Job")


@pytest.fixture(scope="module", params=sorted(RENDERINGS))
def rendering(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    directory, components = RENDERINGS[request.param]
    if not components:
        return render(directory)
    return render_with_components(directory, components, tmp_path_factory.mktemp("overlay"))


def _workloads(resources: list[Resource]) -> list[Resource]:
    return [r for r in resources if r["kind"] in WORKLOAD_KINDS]


def _containers(resources: list[Resource]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (workload["metadata"]["name"], container)
        for workload in _workloads(resources)
        for container in pod_spec(workload)["containers"]
    ]


def test_every_resource_satisfies_its_schema(rendering: list[Resource]) -> None:
    errors = {
        f"{r['kind']}/{r['metadata']['name']}": validation_errors(r)
        for r in rendering
        if validation_errors(r)
    }
    assert errors == {}
    kinds = {r["kind"] for r in rendering}
    assert {"Namespace", "ConfigMap", "Service", "Deployment", "Job"} <= kinds
    assert {"PodDisruptionBudget"} <= kinds


def test_the_validators_refuse_an_unknown_field(tmp_path: Path) -> None:
    """The schema checks above could not pass a misspelt field unnoticed."""
    resources = render_with_components(OVERLAYS / "redis-queue", BOTH_COMPONENTS, tmp_path)
    worker = copy.deepcopy(find(resources, "Deployment", "jobsched-worker"))
    container = pod_spec(worker)["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")
    assert any("livenesProbe" in error for error in validation_errors(worker))

    scaled_object = copy.deepcopy(find(resources, "ScaledObject", "jobsched-worker"))
    scaled_object["spec"]["maxReplicas"] = scaled_object["spec"].pop("maxReplicaCount")
    assert any("maxReplicas" in error for error in validation_errors(scaled_object))

    monitor = copy.deepcopy(find(resources, "ServiceMonitor", "jobsched"))
    monitor["spec"]["endpoints"][0]["interval"] = 15
    assert validation_errors(monitor)


def test_the_services_run_as_non_root_on_a_read_only_root(rendering: list[Resource]) -> None:
    for workload in _workloads(rendering):
        name = workload["metadata"]["name"]
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert set(container["resources"]["requests"]) == {"cpu", "memory"}, name
            assert "memory" in container["resources"]["limits"], name
            # The only writable place: an emptyDir at /tmp.
            mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, name  # noqa: S108 - a mount point, not a file made there


def test_every_service_is_probed_on_its_health_endpoints(rendering: list[Resource]) -> None:
    for name, (port_name, port) in SERVICE_PORTS.items():
        (container,) = pod_spec(find(rendering, "Deployment", name))["containers"]
        ports = {item["name"]: item["containerPort"] for item in container["ports"]}
        assert ports == {port_name: port}, name
        for probe, path in (
            ("startupProbe", "/healthz"),
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ):
            assert container[probe]["httpGet"] == {"path": path, "port": port_name}, (name, probe)
        if name != "jobsched-api":
            # The process must listen where the probes and Prometheus look.
            environment = container_environment(rendering, container)
            assert environment["JOBSCHED_METRICS_PORT"] == str(port), name
            assert environment["JOBSCHED_METRICS_HOST"] == "0.0.0.0", name
    api_environment = container_environment(
        rendering, pod_spec(find(rendering, "Deployment", "jobsched-api"))["containers"][0]
    )
    assert api_environment["JOBSCHED_API_HOST"] == "0.0.0.0"
    assert api_environment["JOBSCHED_API_PORT"] == "8080"


def test_workers_get_longer_to_stop_than_their_shutdown_grace(
    rendering: list[Resource],
) -> None:
    worker = find(rendering, "Deployment", "jobsched-worker")
    environment = container_environment(rendering, pod_spec(worker)["containers"][0])
    shutdown_grace = float(
        environment.get(
            "JOBSCHED_WORKER_SHUTDOWN_GRACE_SECONDS", WorkerSettings().shutdown_grace_seconds
        )
    )
    # Time to hand the remaining runs back and exit after the grace ends.
    assert pod_spec(worker)["terminationGracePeriodSeconds"] >= shutdown_grace + 10


def test_the_settings_each_container_gets_load(
    rendering: list[Resource], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every JOBSCHED_* variable of the manifests names a real setting with a valid value."""
    for name, container in _containers(rendering):
        environment = container_environment(rendering, container)
        # What the Secret provides.
        environment["JOBSCHED_DATABASE_URL"] = "postgresql://jobsched:secret@postgres:5432/jobsched"
        with monkeypatch.context() as patch:
            for variable in [v for v in os.environ if v.startswith("JOBSCHED_")]:
                patch.delenv(variable)
            for variable, value in environment.items():
                patch.setenv(variable, value)
            try:
                settings = Settings()
            except ValidationError as error:
                pytest.fail(f"container of {name}: {error}")
        assert settings.database.url.startswith("postgresql://"), name
        if name == "jobsched-worker":
            assert settings.worker.shutdown_grace_seconds == float(
                environment["JOBSCHED_WORKER_SHUTDOWN_GRACE_SECONDS"]
            )


def test_secrets_come_from_the_one_secret_the_readme_creates(rendering: list[Resource]) -> None:
    readme = (REPOSITORY / "README.md").read_text()
    used: set[tuple[str, str]] = set()
    for workload in _workloads(rendering):
        pod = pod_spec(workload)
        for container in pod["containers"]:
            for variable in container.get("env", []):
                reference = variable.get("valueFrom", {}).get("secretKeyRef")
                if reference:
                    used.add((reference["name"], reference["key"]))
            assert all("value" not in v for v in container["env"] if "URL" in v["name"]), (
                "URLs may carry passwords: take them from the Secret"
            )
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                used |= {
                    (volume["secret"]["secretName"], i["key"]) for i in volume["secret"]["items"]
                }
    assert used == {("jobsched-secrets", "database-url"), ("jobsched-secrets", "admin-token")}
    assert "create secret generic jobsched-secrets" in readme
    for _, key in used:
        assert f"--from-literal={key}=" in readme


def test_the_api_reads_its_admin_token_from_the_mounted_secret(
    rendering: list[Resource],
) -> None:
    api = find(rendering, "Deployment", "jobsched-api")
    (container,) = pod_spec(api)["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    environment = container_environment(rendering, container)
    (token,) = json.loads(environment["JOBSCHED_API_AUTH_TOKENS"])
    assert token["role"] == "admin"
    assert token["token_file"] == f"{mounts['admin-token']}/admin-token"
    assert environment["JOBSCHED_API_AUTH_ENABLED"] == "true"


def test_every_deployment_has_a_disruption_budget_and_services_reach_pods(
    rendering: list[Resource],
) -> None:
    deployments = {r["metadata"]["name"]: r for r in rendering if r["kind"] == "Deployment"}
    budgets = [r for r in rendering if r["kind"] == "PodDisruptionBudget"]
    covered = {
        name
        for budget in budgets
        for name, deployment in deployments.items()
        if _selects(budget["spec"]["selector"]["matchLabels"], deployment)
    }
    assert covered == set(deployments)
    assert find(rendering, "Deployment", "jobsched-scheduler")["spec"]["replicas"] == 2

    for service in [r for r in rendering if r["kind"] == "Service"]:
        targets = [d for d in deployments.values() if _selects(service["spec"]["selector"], d)]
        assert len(targets) == 1, service["metadata"]["name"]
        port_names = {p["name"] for c in pod_spec(targets[0])["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def _selects(labels: dict[str, str], deployment: Resource) -> bool:
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    return all(pod_labels.get(key) == value for key, value in labels.items())


def test_everything_is_in_the_jobsched_namespace(rendering: list[Resource]) -> None:
    for resource in rendering:
        metadata = resource["metadata"]
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "jobsched", metadata["name"]
        if resource["kind"] != "Namespace":
            assert metadata["namespace"] == "jobsched", metadata["name"]


def test_the_overlays_pick_the_queue() -> None:
    for overlay, queue_url in (("database-queue", None), ("redis-queue", "redis://redis:6379/0")):
        resources = render(OVERLAYS / overlay)
        (settings,) = [r for r in resources if r["kind"] == "ConfigMap"]
        assert settings["data"].get("JOBSCHED_QUEUE_URL") == queue_url, overlay
        assert settings["data"].get("JOBSCHED_CACHE_URL") == queue_url, overlay


def test_keda_scales_the_workers_and_owns_their_count(tmp_path: Path) -> None:
    resources = render_with_components(OVERLAYS / "redis-queue", (COMPONENTS / "keda",), tmp_path)
    scaled_object = find(resources, "ScaledObject", "jobsched-worker")
    assert scaled_object["spec"]["scaleTargetRef"] == {"name": "jobsched-worker"}
    (trigger,) = scaled_object["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert "queue_depth" in trigger["metadata"]["query"]
    # The autoscaler sets the worker count; `kubectl apply` must not reset it.
    assert "replicas" not in find(resources, "Deployment", "jobsched-worker")["spec"]
    assert find(resources, "Deployment", "jobsched-api")["spec"]["replicas"] == 2


def test_the_service_monitor_scrapes_every_service(tmp_path: Path) -> None:
    resources = render_with_components(
        OVERLAYS / "database-queue", (COMPONENTS / "servicemonitor",), tmp_path
    )
    monitor = find(resources, "ServiceMonitor", "jobsched")
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped_ports = {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]}
    services = [r for r in resources if r["kind"] == "Service"]
    scraped = {
        s["metadata"]["name"]
        for s in services
        if all(s["metadata"]["labels"].get(k) == v for k, v in selector.items())
        and {p["name"] for p in s["spec"]["ports"]} & scraped_ports
    }
    assert scraped == set(SERVICE_PORTS)
    assert all(endpoint["path"] == "/metrics" for endpoint in monitor["spec"]["endpoints"])
