"""Fixtures for the deployment tests: Helm (built with Go into the install cache by
``deploy/tools/helm`` the first time: minutes) and chart rendering."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from chart_support import CHART, KUBE_VERSION, ROOT, Document, Render, run_helm


@pytest.fixture(scope="session")
def helm() -> Path:
    done = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [str(ROOT / "deploy" / "tools" / "helm"), "--path"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, f"building helm failed:\n{done.stderr[-3000:]}"
    return Path(done.stdout.strip())


@pytest.fixture(scope="session")
def render(helm: Path) -> Render:
    """``render(*values_files, **{"a.b": "v"})`` -> the documents ``helm template`` prints."""

    def template(*values: Path, **settings: str) -> list[Document]:
        args = ["template", "rel", str(CHART), "--namespace", "sse-enforcer"]
        args += ["--kube-version", KUBE_VERSION]
        for path in values:
            args += ["--values", str(path)]
        for name, value in settings.items():
            args += ["--set", f"{name}={value}"]
        done = run_helm(helm, *args)
        assert done.returncode == 0, done.stderr
        return [d for d in yaml.safe_load_all(done.stdout) if d]

    return template
