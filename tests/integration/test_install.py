"""The project installs as users install it (needs the package index, not the stack): the wheel
carries the license and nothing but the package, ``pipx install .`` gives a working ``enforcer``
command, and so does the released wheel of ``make dist`` in a clean venv."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from release import Dist

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(  # noqa: S603 - fixed tools on our own checkout
        args, capture_output=True, text=True, timeout=540, env=env, check=False, cwd=ROOT
    )
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_the_wheel_carries_the_license_and_no_tests(tmp_path: Path) -> None:
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), ".")
    [wheel] = tmp_path.glob("sse_enforcer-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: Apache-2.0" in text
    assert "Project-URL: Homepage" in text
    assert {n.split("/")[0] for n in names} == {
        "enforcer",
        wheel.name.rsplit("-", 3)[0] + ".dist-info",
    }
    assert not [n for n in names if "/doubles/" in n or "/tests/" in n or n.endswith("fakes.py")]
    assert "enforcer/py.typed" in names


@pytest.mark.timeout(600)
def test_pipx_install_gives_a_working_enforcer_command(tmp_path: Path) -> None:
    home, bin_dir = tmp_path / "pipx", tmp_path / "bin"
    env = {
        **os.environ,
        "PIPX_HOME": str(home),
        "PIPX_BIN_DIR": str(bin_dir),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
        "PIPX_DEFAULT_PYTHON": sys.executable,
    }
    pipx = str(Path(sys.executable).with_name("pipx"))
    run(pipx, "install", "--quiet", str(ROOT), env=env)
    version = run(str(bin_dir / "enforcer"), "--version", env=env)
    assert version.startswith("sse-enforcer ")
    script = run(str(bin_dir / "enforcer"), "completion", "bash", env=env)
    assert "complete -o default -F _enforcer_complete enforcer" in script


@pytest.mark.image  # the first use of `dist` runs `make dist` (the image: minutes)
@pytest.mark.timeout(2700)
def test_the_released_wheel_installs_into_a_clean_venv_and_runs(dist: Dist, tmp_path: Path) -> None:
    wheel = dist.one("sse_enforcer-*-py3-none-any.whl")
    assert wheel.name == f"sse_enforcer-{dist.version}-py3-none-any.whl"
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", str(venv))  # no --system-site-packages: nothing but pip
    python = venv / "bin" / "python"
    run(str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENFORCER_", "PYTHON"))}
    outside = tmp_path / "elsewhere"  # not the checkout: the package must come from the venv
    outside.mkdir()
    where = subprocess.run(  # noqa: S603 - the venv's own interpreter
        [str(python), "-c", "import enforcer; print(enforcer.__file__)"],
        capture_output=True, text=True, check=True, timeout=60, cwd=outside, env=env,
    ).stdout  # fmt: skip
    assert where.startswith(str(venv)), where
    version = run(str(venv / "bin" / "enforcer"), "--version", env=env)
    assert version.strip() == f"sse-enforcer {dist.version}"
    assert "usage: enforcer" in run(str(venv / "bin" / "enforcer"), "--help", env=env)


@pytest.mark.image
@pytest.mark.timeout(2700)
def test_the_released_sdist_holds_the_sources_the_wheel_was_built_from(dist: Dist) -> None:
    sdist = dist.one("sse_enforcer-*.tar.gz")
    top = f"sse_enforcer-{dist.version}"
    with tarfile.open(sdist) as archive:
        names = {name.removeprefix(f"{top}/") for name in archive.getnames()}
    assert {
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "enforcer/__init__.py",
        "enforcer/py.typed",
    } <= (names)
    assert not [n for n in names if n.startswith(("tests/", "deploy/", "dist/", ".venv/"))]
    with zipfile.ZipFile(dist.one("*.whl")) as wheel:
        packaged = {n for n in wheel.namelist() if n.startswith("enforcer/")}
    assert packaged <= names  # every module of the wheel comes from the sdist
