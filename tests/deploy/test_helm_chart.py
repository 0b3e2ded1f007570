"""The Helm chart lints, renders valid Kubernetes objects with default and with every optional
part switched on, and refuses values that would break the service (replicas beyond partitions)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import (
    ALL_FEATURES,
    AWS_PRESET,
    CHART,
    KUBE_VERSION,
    ROOT,
    Document,
    Render,
    by_kind,
    one,
    run_helm,
    validate,
)

from enforcer.config import KafkaSettings, load_settings

# The first test may build Helm (minutes on a fresh machine; `make test` builds it first).
pytestmark = pytest.mark.timeout(1800)


@pytest.mark.parametrize("values", [[], ["--values", str(ALL_FEATURES)]], ids=["default", "all"])
def test_helm_lint_strict(helm: Path, values: list[str]) -> None:
    done = run_helm(helm, "lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION, *values)
    assert done.returncode == 0, done.stdout + done.stderr


def test_default_render_is_valid_and_minimal(render: Render) -> None:
    documents = render()
    validate(documents)
    kinds = sorted(d["kind"] for d in documents)
    expected = ["ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget"]
    assert kinds == sorted([*expected, "Pod", "Service", "ServiceAccount"])  # Pod: `helm test`


def test_all_features_render_is_valid(render: Render) -> None:
    documents = render(ALL_FEATURES)
    validate(documents)
    kinds = {d["kind"] for d in documents}
    assert {"Secret", "ServiceMonitor", "PrometheusRule", "ScaledObject"} <= kinds
    assert "replicas" not in one(documents, "Deployment")["spec"]  # KEDA owns the count


def test_pdb_lets_a_drain_evict_unready_pods(render: Render) -> None:
    pdb = one(render(), "PodDisruptionBudget")
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert pdb["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"replicaCount": "7"}, "replicaCount (7) exceeds partitions (6)"),
        (
            {"autoscaling.enabled": "true", "autoscaling.maxReplicaCount": "7"},
            "autoscaling.maxReplicaCount (7) exceeds partitions (6)",
        ),
        ({"terminationGracePeriodSeconds": "20"}, "must exceed shutdownTimeout"),
        ({"kafka.securityProtocol": "SASL_SSL"}, "kafka.saslMechanism is required"),
        (
            {"kafka.securityProtocol": "SASL_SSL", "kafka.saslMechanism": "OAUTHBEARER"},
            "kafka.saslAwsRegion is required",
        ),
        ({"kafka.tls.existingSecret": "ca"}, "needs kafka.securityProtocol SSL or SASL_SSL"),
        ({"mode": "bogus"}, "mode"),  # values.schema.json
        ({"podSecurityContext.runAsNonRoot": "false"}, "runAsNonRoot"),
    ],
)
def test_values_that_would_break_the_service_fail_to_render(
    helm: Path, settings: dict[str, str], message: str
) -> None:
    args = ["template", "rel", str(CHART), "--kube-version", KUBE_VERSION]
    for name, value in settings.items():
        args += ["--set", f"{name}={value}"]
    done = run_helm(helm, *args)
    assert done.returncode != 0
    assert message in done.stderr


def test_replicas_may_equal_partitions(render: Render) -> None:
    deployment = one(render(**{"replicaCount": "6"}), "Deployment")
    assert deployment["spec"]["replicas"] == 6


def _pod_annotations(documents: list[Document]) -> dict[str, str]:
    annotations: dict[str, str] = one(documents, "Deployment")["spec"]["template"]["metadata"][
        "annotations"
    ]
    return annotations


def test_policy_edits_roll_the_pods(render: Render, tmp_path: Path) -> None:
    edited = tmp_path / "policy.yaml"
    edited.write_text(yaml.safe_dump({"policy": "rules:\n  - {bucket: b, key: ek}\n"}))
    before = _pod_annotations(render())["checksum/config"]
    after = _pod_annotations(render(edited))["checksum/config"]
    assert before != after
    assert _pod_annotations(render())["checksum/config"] == before  # deterministic


def test_policy_is_mounted_as_a_file(render: Render) -> None:
    documents = render(ALL_FEATURES)
    policy = one(documents, "ConfigMap", "rel-sse-enforcer-policy")["data"]["policy.yaml"]
    assert yaml.safe_load(policy) == {
        "rules": [{"bucket": "finance", "prefix": "reports/", "key": "finance-ek"}]
    }
    pod = one(documents, "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "policy")
    env = one(documents, "ConfigMap", "rel-sse-enforcer")["data"]
    assert env["ENFORCER_POLICY_FILE"] == f"{mount['mountPath']}/policy.yaml"


def test_credentials_live_only_in_secrets(render: Render) -> None:
    documents = render(ALL_FEATURES)
    secrets = {d["metadata"]["name"]: d["stringData"] for d in by_kind(documents, "Secret")}
    assert secrets["rel-sse-enforcer-s3"]["ENFORCER_S3__SECRET_ACCESS_KEY"] == "not-a-real-secret"
    assert secrets["rel-sse-enforcer-kafka"]["password"] == "not-a-real-password"
    assert secrets["rel-sse-enforcer-kms"]["apiKey"] == "kes:v1:not-a-real-key"
    for document in documents:
        if document["kind"] != "Secret":
            text = yaml.safe_dump(document)
            for secret in ("not-a-real-secret", "not-a-real-password", "not-a-real-key"):
                assert secret not in text, document["kind"]


def test_existing_secrets_are_referenced_not_created(render: Render) -> None:
    documents = render()
    assert by_kind(documents, "Secret") == []
    pod = one(documents, "Deployment")["spec"]["template"]["spec"]
    assert {"secretRef": {"name": "sse-enforcer-s3"}} in pod["containers"][0]["envFrom"]
    kes = next(v for v in pod["volumes"] if v["name"] == "kes-identity")
    assert kes["secret"]["secretName"] == "sse-enforcer-kes"


def test_scaledobject_scales_on_lag_within_the_partitions(render: Render) -> None:
    documents = render(ALL_FEATURES)
    scaled = one(documents, "ScaledObject")["spec"]
    assert scaled["scaleTargetRef"]["name"] == one(documents, "Deployment")["metadata"]["name"]
    assert scaled["maxReplicaCount"] == 12  # = partitions in the all-features values
    triggers = scaled["triggers"]
    assert [t["metadata"]["topic"] for t in triggers] == ["minio-events", "aws-events"]
    for trigger in triggers:
        assert trigger["type"] == "kafka"
        metadata: dict[str, Any] = trigger["metadata"]
        assert metadata["consumerGroup"] == "sse-enforcer"
        assert metadata["allowIdleConsumers"] == "false"
        assert metadata["limitToPartitionsWithLag"] == "true"
        assert metadata["sasl"] == "scram_sha512"
        assert metadata["tls"] == "enable"
        assert {"bootstrapServers", "lagThreshold", "activationLagThreshold"} <= set(metadata)
        assert metadata["offsetResetPolicy"] == "earliest"
    auth = one(documents, "TriggerAuthentication")["spec"]["secretTargetRef"]
    assert {a["parameter"] for a in auth} == {"username", "password", "ca", "cert", "key"}


def test_servicemonitor_scrapes_metrics_on_the_health_port(render: Render) -> None:
    documents = render(ALL_FEATURES)
    [endpoint] = one(documents, "ServiceMonitor")["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("health", "/metrics")
    [port] = one(documents, "Service")["spec"]["ports"]
    assert port["name"] == "health"


def test_prometheusrule_carries_the_rule_file(render: Render) -> None:
    rules = yaml.safe_load((CHART / "files" / "alerts.rules.yaml").read_text())
    rendered = one(render(ALL_FEATURES), "PrometheusRule")["spec"]["groups"]
    assert rendered == rules["groups"]


def test_prometheusrule_names_the_release_consumer_group(render: Render) -> None:
    documents = render(ALL_FEATURES, **{"kafka.groupId": "enforcer-eu"})
    [group] = one(documents, "PrometheusRule")["spec"]["groups"]
    broker = next(r for r in group["rules"] if r["alert"] == "SseEnforcerBrokerLagGrowing")
    assert broker["expr"].count('consumergroup="enforcer-eu"') == 2
    assert "sse-enforcer" not in broker["expr"]


@pytest.mark.parametrize(
    "values", [[], [ALL_FEATURES], [AWS_PRESET]], ids=["default", "all", "aws"]
)
def test_rendered_settings_load(
    render: Render, values: list[Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every ENFORCER_* variable the chart sets is a real setting with a valid value."""
    if values and "security_protocol" not in KafkaSettings.model_fields:
        pytest.skip("the Kafka TLS/SASL settings the all-features values use are not in this tree")
    documents = render(*values)
    env = dict(one(documents, "ConfigMap", "rel-sse-enforcer")["data"])
    [container] = one(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "from-a-secret")
    for secret in by_kind(documents, "Secret"):
        env |= {k: v for k, v in secret["stringData"].items() if k.startswith("ENFORCER_")}
    policy = tmp_path / "policy.yaml"
    policy.write_text(one(documents, "ConfigMap", "rel-sse-enforcer-policy")["data"]["policy.yaml"])
    env["ENFORCER_POLICY_FILE"] = str(policy)
    for name, value in list(env.items()):
        if name != "ENFORCER_POLICY_FILE" and value.startswith("/"):  # a file mounted in the pod
            stand_in = tmp_path / name.lower()
            stand_in.write_text("stand-in")
            env[name] = str(stand_in)
    for name, value in env.items():
        if name.startswith("ENFORCER_"):
            monkeypatch.setenv(name, value)
    settings = load_settings()  # extra="forbid": an unknown variable fails here
    assert settings.health_port == 8080


def test_aws_kms_mounts_no_kes_identity(render: Render) -> None:
    documents = render(**{"kms.kind": "aws", "kms.existingSecret": "", "kms.region": "eu-west-1"})
    validate(documents)
    env = one(documents, "ConfigMap", "rel-sse-enforcer")["data"]
    assert env["ENFORCER_KMS__REGION"] == "eu-west-1"
    assert not any(name.startswith("ENFORCER_KMS__CLIENT") for name in env)
    volumes = one(documents, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert "kes-identity" not in {v["name"] for v in volumes}


def test_the_dashboard_ships_as_a_configmap(render: Render) -> None:
    dashboard = CHART / "files" / "sse-enforcer-dashboard.json"
    rendered = by_kind(render(ALL_FEATURES), "ConfigMap")
    [configmap] = [d for d in rendered if d["metadata"]["name"] == "rel-sse-enforcer-dashboards"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["data"] == {dashboard.name: dashboard.read_text()}


def test_the_chart_is_self_contained_and_the_dashboard_has_one_source() -> None:
    """No symlink in the chart (a vendored or packaged chart would lose its target), and the
    chart's dashboard is the only copy in the repository."""
    links = [p for p in CHART.rglob("*") if p.is_symlink()]
    assert links == []
    uid = json.loads((CHART / "files" / "sse-enforcer-dashboard.json").read_text())["uid"]
    tracked = subprocess.run(
        ["git", "ls-files", "*.json"],  # noqa: S607 - git from PATH, fixed arguments
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    copies = [name for name in tracked if f'"uid": "{uid}"' in (ROOT / name).read_text()]
    assert copies == ["deploy/helm/sse-enforcer/files/sse-enforcer-dashboard.json"]


def test_msk_iam_needs_no_password_and_scales_with_the_pod_identity(render: Render) -> None:
    documents = render(
        **{
            "kafka.securityProtocol": "SASL_SSL",
            "kafka.saslMechanism": "OAUTHBEARER",
            "kafka.saslAwsRegion": "eu-west-1",
            "autoscaling.enabled": "true",
        }
    )
    validate(documents)
    env = one(documents, "ConfigMap", "rel-sse-enforcer")["data"]
    assert env["ENFORCER_KAFKA__SASL_AWS_REGION"] == "eu-west-1"
    [container] = one(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "env" not in container  # no username or password from a Secret
    [trigger] = one(documents, "ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["awsRegion"] == "eu-west-1"
    assert one(documents, "TriggerAuthentication")["spec"] == {
        "podIdentity": {"provider": "aws", "identityOwner": "workload"}
    }
