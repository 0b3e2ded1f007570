"""The chart's options for common clusters, one render test each: KEDA's names for the SASL
mechanisms, the startup probe, a private S3 CA, extra volumes and environment, the image digest,
tracing off unless an endpoint is set, the AWS preset and the `helm test` hook."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import (
    ALL_FEATURES,
    AWS_PRESET,
    CHART,
    KUBE_VERSION,
    Document,
    Render,
    by_kind,
    container,
    one,
    pod_spec,
    run_helm,
    settings,
    validate,
)

# The first test may build Helm (minutes on a fresh machine; `make test` builds it first).
pytestmark = pytest.mark.timeout(1800)

PEM = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
DIGEST = "sha256:" + "ab" * 32


def refuse(helm: Path, values: dict[str, Any], tmp_path: Path) -> str:
    """Render ``values`` expecting Helm to refuse them; its error text."""
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    done = run_helm(helm, "template", "rel", str(CHART), "--kube-version", KUBE_VERSION,
                    "--values", str(path))  # fmt: skip
    assert done.returncode != 0, done.stdout
    return done.stderr


# ---------------------------------------------------------------- KEDA


def sasl(mechanism: str, **extra: Any) -> dict[str, Any]:
    kafka: dict[str, Any] = {"securityProtocol": "SASL_SSL", "saslMechanism": mechanism}
    if mechanism == "OAUTHBEARER":
        kafka["saslAwsRegion"] = "eu-west-1"
    else:
        kafka |= {"username": "u", "password": "p"}
    return {"kafka": kafka, "autoscaling": {"enabled": True, **extra}}


@pytest.mark.parametrize(
    ("mechanism", "keda"),
    [("PLAIN", "plaintext"), ("SCRAM-SHA-256", "scram_sha256"), ("SCRAM-SHA-512", "scram_sha512")],
)
def test_keda_gets_its_own_name_for_each_password_mechanism(
    render: Render, mechanism: str, keda: str
) -> None:
    documents = render(sasl(mechanism))
    validate(documents)
    [trigger] = one(documents, "ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["sasl"] == keda
    assert trigger["metadata"]["tls"] == "enable"
    assert "saslTokenProvider" not in trigger["metadata"]
    auth = one(documents, "TriggerAuthentication")["spec"]
    assert {a["parameter"] for a in auth["secretTargetRef"]} == {"username", "password"}
    assert "podIdentity" not in auth


def test_keda_reads_msk_iam_lag_with_signed_oauthbearer_tokens(render: Render) -> None:
    documents = render(sasl("OAUTHBEARER"))
    validate(documents)
    [trigger] = one(documents, "ScaledObject")["spec"]["triggers"]
    metadata = trigger["metadata"]
    assert (metadata["sasl"], metadata["saslTokenProvider"]) == ("oauthbearer", "aws_msk_iam")
    assert (metadata["awsRegion"], metadata["tls"]) == ("eu-west-1", "enable")
    assert trigger["authenticationRef"]["name"] == "rel-sse-enforcer-keda"
    identity = one(documents, "TriggerAuthentication")["spec"]["podIdentity"]
    assert identity == {"provider": "aws", "identityOwner": "workload"}


@pytest.mark.parametrize(
    ("extra", "identity"),
    [
        ({"awsIdentityOwner": "keda"}, {"provider": "aws", "identityOwner": "keda"}),
        (
            {"awsRoleArn": "arn:aws:iam::123456789012:role/keda-lag"},  # wins over the owner
            {"provider": "aws", "roleArn": "arn:aws:iam::123456789012:role/keda-lag"},
        ),
    ],
)
def test_keda_msk_iam_identity_is_a_choice(
    render: Render, extra: dict[str, str], identity: dict[str, str]
) -> None:
    documents = render(sasl("OAUTHBEARER", **extra))
    assert one(documents, "TriggerAuthentication")["spec"]["podIdentity"] == identity


# ---------------------------------------------------------------- probes


def test_a_startup_probe_holds_liveness_back_while_preflight_runs(render: Render) -> None:
    enforcer = container(render())
    startup, liveness = enforcer["startupProbe"], enforcer["livenessProbe"]
    assert startup["httpGet"] == liveness["httpGet"] == {"path": "/healthz", "port": "health"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # 5 minutes to start
    assert "initialDelaySeconds" not in liveness  # the startup probe replaces a guessed delay
    slow = container(render(**{"startupProbe.failureThreshold": "120"}))["startupProbe"]
    assert slow["failureThreshold"] == 120


def workers_env(documents: list[Document]) -> dict[str, Any]:
    [env] = [e for e in container(documents)["env"] if e["name"] == "ENFORCER_WORKERS"]
    return dict(env)


def test_workers_follow_the_cpu_limit_or_the_value(render: Render) -> None:
    default = render()
    validate(default)
    assert settings(default)["ENFORCER_WORKERS"] == "1"  # no CPU limit: one process
    limited = render({"resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}}})
    validate(limited)
    assert "ENFORCER_WORKERS" not in settings(limited)
    assert workers_env(limited)["valueFrom"] == {"resourceFieldRef": {
        "containerName": "enforcer", "resource": "limits.cpu", "divisor": "1"}}  # fmt: skip
    assert container(limited)["name"] == "enforcer"
    chosen = render({"workers": 3, "resources": {"limits": {"cpu": "4"}}})
    assert settings(chosen)["ENFORCER_WORKERS"] == "3"
    assert "env" not in container(chosen)


def test_zero_workers_are_refused(helm: Path, tmp_path: Path) -> None:
    assert "workers" in refuse(helm, {"workers": 0}, tmp_path)


# ---------------------------------------------------------------- S3 CA, extras, image


def test_a_private_s3_ca_is_mounted_where_the_setting_points(render: Render) -> None:
    documents = render({"s3": {"endpointUrl": "https://minio.internal", "caBundle": {"pem": PEM}}})
    validate(documents)
    configmap = one(documents, "ConfigMap", "rel-sse-enforcer-s3-ca")
    assert configmap["data"] == {"ca.crt": PEM}
    [mount] = [m for m in container(documents)["volumeMounts"] if m["name"] == "s3-ca"]
    assert mount["readOnly"] is True
    assert settings(documents)["ENFORCER_S3__CA_BUNDLE"] == f"{mount['mountPath']}/ca.crt"
    [volume] = [v for v in pod_spec(documents)["volumes"] if v["name"] == "s3-ca"]
    assert volume["configMap"]["name"] == "rel-sse-enforcer-s3-ca"
    before = one(render(), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    after = one(documents, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert before["checksum/config"] != after["checksum/config"]  # a new CA rolls the pods


@pytest.mark.parametrize("source", ["existingSecret", "existingConfigMap"])
def test_the_s3_ca_may_come_from_an_existing_object(render: Render, source: str) -> None:
    ca = {source: "corp-ca", "key": "bundle.pem"}
    documents = render({"s3": {"caBundle": ca}})
    validate(documents)
    assert "rel-sse-enforcer-s3-ca" not in {d["metadata"]["name"] for d in documents}
    [volume] = [v for v in pod_spec(documents)["volumes"] if v["name"] == "s3-ca"]
    kind = "secret" if source == "existingSecret" else "configMap"
    name_field = "secretName" if kind == "secret" else "name"
    assert volume[kind][name_field] == "corp-ca"
    assert volume[kind]["items"] == [{"key": "bundle.pem", "path": "bundle.pem"}]
    assert settings(documents)["ENFORCER_S3__CA_BUNDLE"].endswith("/s3-ca/bundle.pem")


def test_no_ca_no_ca_setting(render: Render) -> None:
    documents = render()
    assert "ENFORCER_S3__CA_BUNDLE" not in settings(documents)
    assert "s3-ca" not in {v["name"] for v in pod_spec(documents)["volumes"]}


def test_two_ca_sources_are_refused(helm: Path, tmp_path: Path) -> None:
    both = {"s3": {"caBundle": {"pem": PEM, "existingSecret": "corp-ca"}}}
    assert "give one of pem, existingConfigMap, existingSecret" in refuse(helm, both, tmp_path)


def test_extra_volumes_mounts_env_and_env_from_reach_the_pod(render: Render) -> None:
    documents = render(
        {
            "extraVolumes": [{"name": "certs", "secret": {"secretName": "corp-certs"}}],
            "extraVolumeMounts": [{"name": "certs", "mountPath": "/certs", "readOnly": True}],
            "extraEnv": [
                {"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}},
            ],
            "extraEnvFrom": [{"secretRef": {"name": "corp-env"}}],
        }
    )
    validate(documents)
    enforcer, pod = container(documents), pod_spec(documents)
    assert {"name": "certs", "secret": {"secretName": "corp-certs"}} in pod["volumes"]
    assert {"name": "certs", "mountPath": "/certs", "readOnly": True} in enforcer["volumeMounts"]
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in enforcer["env"]
    assert {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}} in (
        enforcer["env"]
    )
    assert enforcer["envFrom"][-1] == {"secretRef": {"name": "corp-env"}}  # after the chart's
    assert {"name": "tmp", "mountPath": "/tmp"} in enforcer["volumeMounts"]  # the chart's stay


def test_an_image_digest_wins_over_the_tag(render: Render) -> None:
    pinned = render({"image": {"repository": "registry.example.com/sse-enforcer",
                               "tag": "0.1.0", "digest": DIGEST}})  # fmt: skip
    assert container(pinned)["image"] == f"registry.example.com/sse-enforcer@{DIGEST}"
    [test_pod] = by_kind(pinned, "Pod")
    assert test_pod["spec"]["containers"][0]["image"] == container(pinned)["image"]
    tagged = render({"image": {"repository": "registry.example.com/sse-enforcer", "tag": "9.9"}})
    assert container(tagged)["image"] == "registry.example.com/sse-enforcer:9.9"


def test_a_malformed_digest_is_refused(helm: Path, tmp_path: Path) -> None:
    assert "digest" in refuse(helm, {"image": {"digest": "latest"}}, tmp_path)


# ---------------------------------------------------------------- tracing


def test_tracing_is_off_unless_an_endpoint_is_set(render: Render) -> None:
    env = settings(render())
    assert env["OTEL_TRACES_EXPORTER"] == "none"
    assert not {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER"} & set(env)


def test_an_endpoint_exports_a_sampled_share_of_traces(render: Render) -> None:
    env = settings(render({"otel": {"endpoint": "https://otel.example.com:4318"}}))
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://otel.example.com:4318"
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert float(env["OTEL_TRACES_SAMPLER_ARG"]) == 0.1
    every = settings(render({"otel": {"endpoint": "http://otel:4318", "sampleRatio": 1}}))
    assert float(every["OTEL_TRACES_SAMPLER_ARG"]) == 1.0


# ---------------------------------------------------------------- the AWS preset


def test_the_aws_preset_renders_without_static_secrets(render: Render) -> None:
    documents = render(AWS_PRESET)
    validate(documents)
    assert by_kind(documents, "Secret") == []
    enforcer, pod = container(documents), pod_spec(documents)
    assert all("secretRef" not in source for source in enforcer["envFrom"])
    assert "env" not in enforcer  # no SASL password, no KES API key
    assert not [v for v in pod["volumes"] if "secret" in v]
    account = one(documents, "ServiceAccount")["metadata"]
    assert account["name"] == pod["serviceAccountName"] == "sse-enforcer"
    assert account["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    env = settings(documents)
    assert (env["ENFORCER_KMS__KIND"], env["ENFORCER_KMS__REGION"]) == ("aws", "eu-west-1")
    assert env["ENFORCER_KAFKA__SASL_MECHANISM"] == "OAUTHBEARER"
    assert "ENFORCER_S3__ENDPOINT_URL" not in env  # AWS S3 itself
    egress = one(documents, "NetworkPolicy")["spec"]["egress"]
    assert {"port": 9098, "protocol": "TCP"} in egress[0]["ports"]
    assert {"port": 9092, "protocol": "TCP"} not in egress[0]["ports"]
    cidrs = {rule["to"][0]["ipBlock"]["cidr"] for rule in egress[1:]}
    assert cidrs == {"169.254.169.254/32", "169.254.170.23/32"}


def test_the_aws_preset_with_pod_identity_needs_no_annotation(render: Render) -> None:
    documents = render(AWS_PRESET, {"serviceAccount": {"annotations": None}})
    validate(documents)
    assert "annotations" not in one(documents, "ServiceAccount")["metadata"]


# ---------------------------------------------------------------- helm test


def helm_test_pod(documents: list[Document]) -> Document:
    [pod] = by_kind(documents, "Pod")
    return pod


class _Health(BaseHTTPRequestHandler):
    metrics = b"enforcer_paused 0\n"

    def do_GET(self) -> None:
        body = {"/healthz": b"ok", "/metrics": self.metrics}.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_helm_test_asks_the_service_for_health_and_metrics(render: Render) -> None:
    documents = render()
    pod = helm_test_pod(documents)
    validate([pod])
    annotations = pod["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "test"
    [check] = pod["spec"]["containers"]
    assert check["image"] == container(documents)["image"]
    assert check["args"][-1] == "http://rel-sse-enforcer.sse-enforcer.svc:8080"
    assert pod["spec"]["restartPolicy"] == "Never"
    selector = one(documents, "Service")["spec"]["selector"]
    assert not selector.items() <= pod["metadata"]["labels"].items()  # never a Service endpoint
    ingress = one(documents, "NetworkPolicy")["spec"]["ingress"][0]["from"]
    labels = pod["metadata"]["labels"]
    admitted = [p["podSelector"]["matchLabels"] for p in ingress if "podSelector" in p]
    assert any(peer.items() <= labels.items() for peer in admitted)


@pytest.mark.parametrize(("metrics", "code"), [(b"enforcer_paused 0\n", 0), (b"up 1\n", 1)])
def test_the_helm_test_script_passes_only_on_enforcer_metrics(
    render: Render, health_server: ThreadingHTTPServer, metrics: bytes, code: int
) -> None:
    """The pod's own command, run here against a stand-in health port."""
    [check] = helm_test_pod(render())["spec"]["containers"]
    assert check["command"] == ["python3", "-c"]
    _Health.metrics = metrics
    base = f"http://127.0.0.1:{health_server.server_address[1]}"
    done = subprocess.run(  # noqa: S603 - the chart's own script, our interpreter
        [sys.executable, "-c", check["args"][0], base],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == code, done.stdout + done.stderr
    assert "/healthz 200 ok" in done.stdout


@pytest.mark.parametrize(
    "values", [{"helmTest": {"enabled": False}}, {"service": {"enabled": False}}]
)
def test_no_helm_test_pod_when_off_or_without_a_service(
    render: Render, values: dict[str, Any]
) -> None:
    documents = render(values)
    assert by_kind(documents, "Pod") == []
    [rule] = one(documents, "NetworkPolicy")["spec"]["ingress"]
    assert all("podSelector" not in peer for peer in rule["from"])


def test_the_all_features_values_use_every_option(render: Render) -> None:
    documents = render(ALL_FEATURES)
    env = settings(documents)
    assert {"ENFORCER_S3__CA_BUNDLE", "OTEL_EXPORTER_OTLP_ENDPOINT"} <= set(env)
    enforcer = container(documents)
    assert {"configMapRef": {"name": "site-settings"}} in enforcer["envFrom"]
    assert "site-certs" in {m["name"] for m in enforcer["volumeMounts"]}
