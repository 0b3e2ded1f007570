"""The kustomize base (deploy/kubernetes) and the chart's default render describe the same pod:
image, user, settings, probes, ports, resources, security context, volumes and policies.
(tests/unit/test_deploy.py checks the kustomize files on their own.)"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from chart_support import KUSTOMIZE, Document, Render, one

from enforcer import __version__

#: The chart's `helm test` pod (release "rel"): the chart's NetworkPolicy admits it as well.
TEST_LABELS = {"app.kubernetes.io/instance": "rel", "app.kubernetes.io/component": "helm-test"}

# The first test may build Helm (minutes on a fresh machine; `make test` builds it first).
pytestmark = pytest.mark.timeout(1800)


def kustomize_documents() -> list[Document]:
    kustomization = yaml.safe_load((KUSTOMIZE / "kustomization.yaml").read_text())
    return [yaml.safe_load((KUSTOMIZE / name).read_text()) for name in kustomization["resources"]]


@pytest.fixture(scope="module")
def pair(render: Render) -> tuple[list[Document], list[Document]]:
    return render(), kustomize_documents()


def container(documents: list[Document]) -> dict[str, Any]:
    [only] = one(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    found: dict[str, Any] = only
    return found


def pod(documents: list[Document]) -> dict[str, Any]:
    spec: dict[str, Any] = one(documents, "Deployment")["spec"]["template"]["spec"]
    return spec


def settings_names(documents: list[Document]) -> set[str]:
    names = set()
    for configmap in documents:
        if configmap["kind"] == "ConfigMap":
            names |= {k for k in configmap["data"] if k.startswith(("ENFORCER_", "OTEL_"))}
    return names


def test_same_image_and_version(pair: tuple[list[Document], list[Document]]) -> None:
    chart, kustomize = pair
    assert container(chart)["image"] == container(kustomize)["image"]
    assert container(chart)["image"].endswith(f":{__version__}")
    assert container(chart)["args"] == container(kustomize)["args"] == ["run"]


def test_same_settings(pair: tuple[list[Document], list[Document]]) -> None:
    chart, kustomize = pair
    assert settings_names(chart) == settings_names(kustomize)
    chart_env = one(chart, "ConfigMap", "rel-sse-enforcer")["data"]
    kustomize_env = one(kustomize, "ConfigMap")["data"]
    for name in settings_names(chart):
        assert chart_env[name] == kustomize_env[name], name


@pytest.mark.parametrize(
    "field",
    ["startupProbe", "livenessProbe", "readinessProbe", "ports", "resources", "securityContext"],
)
def test_same_container_field(pair: tuple[list[Document], list[Document]], field: str) -> None:
    chart, kustomize = pair
    assert container(chart)[field] == container(kustomize)[field]


@pytest.mark.parametrize(
    "field", ["securityContext", "terminationGracePeriodSeconds", "automountServiceAccountToken"]
)
def test_same_pod_field(pair: tuple[list[Document], list[Document]], field: str) -> None:
    chart, kustomize = pair
    assert pod(chart)[field] == pod(kustomize)[field]


def test_same_scrape_annotations(pair: tuple[list[Document], list[Document]]) -> None:
    def scrape(documents: list[Document]) -> dict[str, str]:
        metadata = one(documents, "Deployment")["spec"]["template"]["metadata"]
        return {k: v for k, v in metadata["annotations"].items() if k.startswith("prometheus.io/")}

    chart, kustomize = pair
    assert scrape(chart) == scrape(kustomize)
    assert scrape(chart)["prometheus.io/path"] == "/metrics"


def test_same_mounts_and_rollout(pair: tuple[list[Document], list[Document]]) -> None:
    chart, kustomize = pair

    def mounts(documents: list[Document]) -> dict[str, bool]:
        return {
            m["mountPath"]: m.get("readOnly", False) for m in container(documents)["volumeMounts"]
        }

    assert mounts(chart) == mounts(kustomize)
    for documents in pair:
        assert one(documents, "Deployment")["spec"]["strategy"] == {
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}
        }
        assert one(documents, "Deployment")["spec"]["replicas"] == 2


def test_same_disruption_budget_and_network_policy(
    pair: tuple[list[Document], list[Document]],
) -> None:
    chart, kustomize = pair
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        chart_spec = dict(one(chart, kind)["spec"])
        kustomize_spec = dict(one(kustomize, kind)["spec"])
        for spec in (chart_spec, kustomize_spec):  # the chart adds the release to the selectors
            spec.pop("selector", None)
            spec.pop("podSelector", None)
        if kind == "NetworkPolicy":  # the chart also admits its `helm test` pod
            [rule] = chart_spec["ingress"]
            test_peer = {"podSelector": {"matchLabels": TEST_LABELS}}
            assert test_peer in rule["from"]
            chart_spec["ingress"] = [{**rule, "from": [p for p in rule["from"] if p != test_peer]}]
        assert chart_spec == kustomize_spec, kind
