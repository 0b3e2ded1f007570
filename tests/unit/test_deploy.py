"""The deploy files speak the configuration contract: every ENFORCER_* name they set is real."""

from pathlib import Path

import pytest
import yaml

from enforcer.config import load_settings

ROOT = Path(__file__).parents[2]
CONFIGMAP = ROOT / "deploy" / "kubernetes" / "configmap.yaml"


def test_configmap_settings_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = yaml.safe_load(CONFIGMAP.read_text())["data"]
    policy = tmp_path / "policy.yaml"
    policy.write_text(data["policy.yaml"])
    for name, value in data.items():
        if name.startswith("ENFORCER_"):
            if value.startswith("/"):  # a file mounted into the pod: a stand-in must exist
                stand_in = tmp_path / Path(value).name
                stand_in.write_text("stand-in")
                value = str(stand_in)  # noqa: PLW2901 - the value the pod would see
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("ENFORCER_POLICY_FILE", str(policy))
    settings = load_settings()  # extra="forbid": an unknown variable would fail here
    assert settings.kms.kind == "kes"
    assert settings.health_port == 8080


def test_every_manifest_parses_and_kustomization_lists_them() -> None:
    folder = ROOT / "deploy" / "kubernetes"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        document = yaml.safe_load((folder / name).read_text())
        assert document["apiVersion"] and document["kind"], name


def test_grace_period_exceeds_the_shutdown_bound() -> None:
    deployment = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > load_settings().shutdown_timeout


def test_manifests_validate_against_the_kubernetes_schemas() -> None:
    import kubernetes_validate

    folder = ROOT / "deploy" / "kubernetes"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        document = yaml.safe_load((folder / name).read_text())
        kubernetes_validate.validate(document, "1.30.0", strict=True)


def test_a_drain_may_evict_a_paused_replica() -> None:
    pdb = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "poddisruptionbudget.yaml").read_text())
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_the_image_runs_as_the_user_the_manifests_expect() -> None:
    containerfile = (ROOT / "deploy" / "image" / "Containerfile").read_text().splitlines()
    runtime = containerfile[
        max(i for i, line in enumerate(containerfile) if line.startswith("FROM")) :
    ]
    [user] = [line.split()[1] for line in runtime if line.startswith("USER ")]
    deployment = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    assert user == f"{pod['runAsUser']}:{pod['runAsGroup']}"
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "sse-enforcer" / "values.yaml").read_text())
    assert user == "{runAsUser}:{runAsGroup}".format(**values["podSecurityContext"])
    assert 'ENTRYPOINT ["enforcer"]' in runtime
    assert 'CMD ["run"]' in runtime
