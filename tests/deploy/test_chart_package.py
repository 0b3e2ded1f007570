"""The packaged chart of ``make dist`` (dist/sse-enforcer-VERSION.tgz) stands on its own: it lints,
renders valid objects with its defaults and its AWS preset, and carries the dashboard and alert
rules the repository's chart folder has (no symlink left dangling out of it)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import yaml
from chart_support import CHART, KUBE_VERSION, Document, one, run_helm, validate
from release import Dist

# The first test builds the release (`make dist`: the image takes minutes the first time).
pytestmark = [pytest.mark.image, pytest.mark.timeout(2700)]


@pytest.fixture(scope="module")
def package(dist: Dist) -> Path:
    chart = dist.one("sse-enforcer-*.tgz")
    assert chart.name == f"sse-enforcer-{dist.version}.tgz"
    return chart


@pytest.fixture(scope="module")
def unpacked(package: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chart")
    with tarfile.open(package) as archive:
        assert not [m.name for m in archive.getmembers() if m.issym() or m.islnk()]
        archive.extractall(folder, filter="data")
    return folder / "sse-enforcer"


def render_package(helm: Path, package: Path, *values: Path) -> list[Document]:
    args = ["template", "rel", str(package), "--namespace", "sse-enforcer"]
    args += ["--kube-version", KUBE_VERSION]
    for path in values:
        args += ["--values", str(path)]
    done = run_helm(helm, *args)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def test_the_packaged_chart_lints(helm: Path, package: Path) -> None:
    done = run_helm(helm, "lint", str(package), "--strict", "--kube-version", KUBE_VERSION)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_packaged_chart_is_the_release_version(unpacked: Path, dist: Dist) -> None:
    chart = yaml.safe_load((unpacked / "Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == (dist.version, dist.version)


def test_the_packaged_chart_renders_valid_objects(helm: Path, package: Path) -> None:
    documents = render_package(helm, package)
    validate(documents)
    image = one(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(":" + yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])


def test_the_packaged_aws_preset_renders(helm: Path, package: Path, unpacked: Path) -> None:
    documents = render_package(helm, package, unpacked / "values-aws.yaml")
    validate(documents)
    assert one(documents, "ConfigMap", "rel-sse-enforcer")["data"]["ENFORCER_KMS__KIND"] == "aws"


@pytest.mark.parametrize(
    "name", ["files/sse-enforcer-dashboard.json", "files/alerts.rules.yaml", "values.yaml"]
)
def test_the_package_carries_the_chart_files_as_they_are(unpacked: Path, name: str) -> None:
    assert (unpacked / name).read_bytes() == (CHART / name).read_bytes()


def test_the_packaged_dashboard_and_rules_render(helm: Path, package: Path, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump({"grafanaDashboard": {"enabled": True}, "prometheusRule": {"enabled": True}})
    )
    documents = render_package(helm, package, values)
    dashboards = one(documents, "ConfigMap", "rel-sse-enforcer-dashboards")["data"]
    assert list(dashboards) == ["sse-enforcer-dashboard.json"]
    assert one(documents, "PrometheusRule")["spec"]["groups"]
