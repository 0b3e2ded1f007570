"""The chart's NetworkPolicy: egress ports from values (named presets for MinIO, Kafka, Amazon
MSK, KES, HTTPS and the AWS credential endpoints), and the health port closed to all but the
peers values name (Prometheus' namespace by default) and the `helm test` pod."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import CHART, KUBE_VERSION, Document, Render, one, run_helm, validate

pytestmark = pytest.mark.timeout(1800)  # the first test may build Helm

DNS = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]


def policy(render: Render, **network: Any) -> dict[str, Any]:
    documents = render({"networkPolicy": network}) if network else render()
    validate(documents)
    spec: dict[str, Any] = one(documents, "NetworkPolicy")["spec"]
    return spec


def tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"port": p, "protocol": "TCP"} for p in ports]


def open_ports(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The ports of the egress rule without destinations (any address)."""
    [anywhere] = [rule for rule in spec["egress"] if "to" not in rule]
    ports: list[dict[str, Any]] = anywhere["ports"]
    return ports


def test_default_egress_is_dns_kafka_minio_kes_and_https(render: Render) -> None:
    spec = policy(render)
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["egress"] == [{"ports": DNS + tcp(9092, 9000, 7373, 443)}]


@pytest.mark.parametrize(
    ("preset", "port"),
    [
        ("kafka", 9092),
        ("msk-iam", 9098),
        ("msk-tls", 9094),
        ("msk-scram", 9096),
        ("minio", 9000),
        ("kes", 7373),
        ("https", 443),
        ("otlp", 4318),
    ],
)
def test_each_port_preset_opens_its_port_and_no_other(
    render: Render, preset: str, port: int
) -> None:
    assert policy(render, egressPresets=[preset])["egress"] == [{"ports": DNS + tcp(port)}]


@pytest.mark.parametrize(
    ("preset", "cidr"),
    [("aws-metadata", "169.254.169.254/32"), ("eks-pod-identity", "169.254.170.23/32")],
)
def test_the_aws_credential_endpoints_are_opened_by_address_and_port(
    render: Render, preset: str, cidr: str
) -> None:
    spec = policy(render, egressPresets=["msk-iam", preset])
    assert spec["egress"] == [
        {"ports": DNS + tcp(9098)},
        {"to": [{"ipBlock": {"cidr": cidr}}], "ports": tcp(80)},
    ]  # port 80 to that one address only, not to the world


def test_ports_and_rules_from_values_come_after_the_presets(render: Render) -> None:
    rule = {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": tcp(5432)}
    spec = policy(render, egressPresets=["kafka"], egressPorts=[8443, 53, 9092], extraEgress=[rule])
    assert spec["egress"] == [{"ports": DNS + tcp(9092, 8443)}, rule]  # 53, 9092 once each


@pytest.mark.parametrize(
    ("endpoint", "port"),
    [("http://otel-collector.observability.svc:4318", 4318), ("https://otel.example.com", 443)],
)
def test_an_otlp_endpoint_opens_its_own_port(render: Render, endpoint: str, port: int) -> None:
    documents = render({"otel": {"endpoint": endpoint}})
    assert {"port": port, "protocol": "TCP"} in open_ports(one(documents, "NetworkPolicy")["spec"])


def test_an_unknown_preset_is_refused_with_the_known_names(helm: Path, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"networkPolicy": {"egressPresets": ["msk"]}}))
    done = run_helm(helm, "template", "rel", str(CHART), "--kube-version", KUBE_VERSION,
                    "--values", str(values))  # fmt: skip
    assert done.returncode != 0
    assert 'unknown preset "msk"' in done.stderr
    assert "msk-iam" in done.stderr  # the message lists the presets


def ingress_peers(documents: list[Document]) -> list[dict[str, Any]]:
    [rule] = one(documents, "NetworkPolicy")["spec"]["ingress"]
    assert rule["ports"] == tcp(8080)
    peers: list[dict[str, Any]] = rule["from"]
    return peers


def test_metrics_are_open_only_to_the_monitoring_namespace_by_default(render: Render) -> None:
    peers = ingress_peers(render())
    monitoring = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    assert {"namespaceSelector": monitoring} in peers
    assert all(peer for peer in peers)  # no empty peer: that would admit everyone
    assert {"namespaceSelector": {}} not in peers


def test_metrics_peers_come_from_values(render: Render) -> None:
    prometheus = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    documents = render({"networkPolicy": {"metricsFrom": [prometheus]}})
    validate(documents)
    peers = ingress_peers(documents)
    assert peers[0] == prometheus
    assert len(peers) == 2  # and the `helm test` pod


def test_no_peers_and_no_helm_test_admit_only_the_kubelet(render: Render) -> None:
    documents = render({"networkPolicy": {"metricsFrom": []}, "helmTest": {"enabled": False}})
    validate(documents)
    assert one(documents, "NetworkPolicy")["spec"]["ingress"] == []


def test_no_network_policy_when_disabled(render: Render) -> None:
    documents = render({"networkPolicy": {"enabled": False}})
    assert "NetworkPolicy" not in {d["kind"] for d in documents}
