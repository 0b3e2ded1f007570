"""The released image: the OCI archive of ``make dist`` (deploy/image/build, labelled) loads into
an empty podman store of its own, carries its OCI labels, and runs against the local stack
(deploy/image/smoke): `enforcer --version`, then `enforcer run` as UID 10001 on a read-only root
filesystem until a plaintext object written to MinIO comes out under its required key, then
SIGTERM and exit 0.

Marked ``image`` (and, like every test here, ``integration``). Deselect with ``-m 'not image'``;
the first build on a machine takes minutes (mmdebstrap base, locked dependencies)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from release import Dist
from support import StackEnv

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "deploy" / "image"

pytestmark = [pytest.mark.image, pytest.mark.main_topic, pytest.mark.timeout(2400)]


#: podman's environment for this module: an image store of its own (set by ``store``).
PODMAN_ENV: dict[str, str] = {}


def run(*command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own scripts and podman, fixed arguments
        command, capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, **PODMAN_ENV},
    )  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty podman image store (CONTAINERS_STORAGE_CONF): only what the archive holds is
    there, so nothing of the machine's own images can stand in for it."""
    root = tmp_path_factory.mktemp("podman-store")
    conf = root / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{root}/graph"\nrunroot = "{root}/run"\n'
    )
    PODMAN_ENV["CONTAINERS_STORAGE_CONF"] = str(conf)
    try:
        yield root
    finally:
        run("podman", "rmi", "--all", "--force", timeout=300)
        PODMAN_ENV.clear()
        shutil.rmtree(root / "graph", ignore_errors=True)


@pytest.fixture(scope="module")
def image(dist: Dist, store: Path) -> str:
    archive = dist.one("sse-enforcer-*-image.oci.tar")
    assert archive.name == f"sse-enforcer-{dist.version}-image.oci.tar"
    assert run("podman", "images", "--quiet", timeout=60).stdout == ""  # an empty store
    loaded = run("podman", "load", "--input", str(archive), timeout=900)
    assert loaded.returncode == 0, loaded.stderr[-5000:]
    name: str = dist.info["image"]
    assert name in loaded.stdout, loaded.stdout
    return name


@pytest.mark.timeout(2700)  # the first use of `dist` runs `make dist`
def test_the_archive_carries_the_release_labels(image: str, dist: Dist) -> None:
    inspected = run("podman", "image", "inspect", "--format", "{{.Id}} {{json .Labels}}", image,
                    timeout=60)  # fmt: skip
    assert inspected.returncode == 0, inspected.stderr
    image_id, _, labels_json = inspected.stdout.strip().partition(" ")
    assert image_id.removeprefix("sha256:") == dist.info["image_id"].removeprefix("sha256:")
    labels = json.loads(labels_json)
    oci = {k.removeprefix("org.opencontainers.image."): v for k, v in labels.items()
           if k.startswith("org.opencontainers.image.")}  # fmt: skip
    assert oci["version"] == dist.version
    assert oci["revision"] == dist.info["revision"]
    assert oci["created"] == dist.info["created"]
    assert oci["licenses"] == "Apache-2.0"
    assert oci["source"] == "https://github.com/sse-enforcer/sse-enforcer"
    assert {"title", "description", "url", "documentation", "vendor"} <= set(oci)


def test_the_image_runs_as_the_manifests_say(image: str) -> None:
    config = run(
        "podman", "image", "inspect", "--format",
        "{{.Config.User}} {{json .Config.Entrypoint}} {{json .Config.Cmd}}", image,
        timeout=60,
    )  # fmt: skip
    assert config.returncode == 0, config.stderr
    assert config.stdout.split() == ["10001:10001", '["enforcer"]', '["run"]']


def test_the_runtime_has_no_build_tools_and_writes_only_tmp(image: str) -> None:
    probe = """
import importlib.util, os
print(*(importlib.util.find_spec(m) is not None for m in ("pip", "setuptools", "ensurepip")))
print(os.getuid(), os.getgid())
import shutil; print(shutil.which("python3"))  # the chart's `helm test` pod runs python3
for path in ("/opt/venv/x", "/etc/x", "/tmp/x"):
    try:
        open(path, "w").close()
        print(path, "writable")
    except OSError as exc:
        print(path, exc.strerror)
"""
    ran = run(
        str(IMAGE / "run"), "--rm", "--network", "host", "--read-only", "--tmpfs", "/tmp",
        "--cap-drop", "ALL", "--entrypoint", "/opt/venv/bin/python", image, "-c", probe,
        timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        "False False False",
        "10001 10001",
        "/opt/venv/bin/python3",
        "/opt/venv/x Read-only file system",
        "/etc/x Read-only file system",
        "/tmp/x writable",
    ]


def test_the_image_enforces_against_the_local_stack(image: str, stack: StackEnv) -> None:
    smoke = run(str(IMAGE / "smoke"), image, timeout=600)
    assert smoke.returncode == 0, f"{smoke.stdout}\n{smoke.stderr[-5000:]}"
    assert "came out SSE-KMS under" in smoke.stderr
    assert "SIGTERM: exit 0" in smoke.stderr
