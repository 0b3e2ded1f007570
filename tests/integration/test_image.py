"""The container image builds (deploy/image/build: cached, so an unchanged tree only checks a
hash) and runs against the local stack (deploy/image/smoke): `enforcer --version`, then
`enforcer run` as UID 10001 on a read-only root filesystem until a plaintext object written to
MinIO comes out under its required key, then SIGTERM and exit 0.

Marked ``image`` (and, like every test here, ``integration``). Deselect with ``-m 'not image'``;
the first build on a machine takes minutes (mmdebstrap base, locked dependencies)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support import StackEnv

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "deploy" / "image"

pytestmark = [pytest.mark.image, pytest.mark.main_topic, pytest.mark.timeout(2400)]


def run(*command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own scripts and podman, fixed arguments
        command, capture_output=True, text=True, timeout=timeout, check=False, env=os.environ
    )


@pytest.fixture(scope="module")
def image() -> str:
    built = run(str(IMAGE / "build"), timeout=2100)
    assert built.returncode == 0, built.stderr[-5000:]
    return built.stdout.strip().splitlines()[-1]


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
        "/opt/venv/x Read-only file system",
        "/etc/x Read-only file system",
        "/tmp/x writable",
    ]


def test_the_image_enforces_against_the_local_stack(image: str, stack: StackEnv) -> None:
    smoke = run(str(IMAGE / "smoke"), image, timeout=600)
    assert smoke.returncode == 0, f"{smoke.stdout}\n{smoke.stderr[-5000:]}"
    assert "came out SSE-KMS under" in smoke.stderr
    assert "SIGTERM: exit 0" in smoke.stderr
