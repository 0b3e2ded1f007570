"""The project installs as users install it (needs the package index, not the stack): the wheel
carries the license and nothing but the package, and ``pipx install .`` gives a working
``enforcer`` command."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

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
