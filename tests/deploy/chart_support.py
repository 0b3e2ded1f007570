"""Helpers for the deployment tests: where the chart is, how to run Helm, picking documents."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "sse-enforcer"
ALL_FEATURES = CHART / "ci" / "all-features-values.yaml"
AWS_PRESET = CHART / "values-aws.yaml"
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
KUBE_VERSION = "1.30.0"  # the Kubernetes version the tests render and validate for

Document = dict[str, Any]
Render = Callable[..., list[Document]]


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own Helm build, fixed arguments
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False
    )


#: Custom resources: no schema ships with kubernetes-validate, so their shape is checked here.
CUSTOM = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ("selector", "endpoints"),
    ("monitoring.coreos.com/v1", "PrometheusRule"): ("groups",),
    ("keda.sh/v1alpha1", "ScaledObject"): ("scaleTargetRef", "triggers"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): ("secretTargetRef|podIdentity",),
}


def validate(documents: list[Document]) -> None:
    """Standard objects against the Kubernetes schemas (strict: no unknown field), custom
    resources against the fields their controllers require."""
    import kubernetes_validate

    for document in documents:
        key = (document["apiVersion"], document["kind"])
        if key in CUSTOM:
            assert document["metadata"]["name"]
            for fields in CUSTOM[key]:  # "a|b": one of them
                assert any(document["spec"].get(f) for f in fields.split("|")), (key, fields)
        else:
            kubernetes_validate.validate(document, KUBE_VERSION, strict=True)


def container(documents: list[Document]) -> dict[str, Any]:
    """The enforcer's container in the rendered Deployment."""
    [only] = one(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    found: dict[str, Any] = only
    return found


def pod_spec(documents: list[Document]) -> dict[str, Any]:
    spec: dict[str, Any] = one(documents, "Deployment")["spec"]["template"]["spec"]
    return spec


def settings(documents: list[Document]) -> dict[str, str]:
    """The ENFORCER_*/OTEL_* variables of the rendered settings ConfigMap."""
    data: dict[str, str] = one(documents, "ConfigMap", "rel-sse-enforcer")["data"]
    return data


def by_kind(documents: list[Document], kind: str) -> list[Document]:
    return [d for d in documents if d["kind"] == kind]


def one(documents: list[Document], kind: str, name: str | None = None) -> Document:
    found = [d for d in by_kind(documents, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} found"
    return found[0]
