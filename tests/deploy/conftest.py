"""Fixtures for the deployment tests: Helm (built with Go into the install cache by
``deploy/tools/helm`` the first time: minutes) and chart rendering."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

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
def render(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Render:
    """``render(*values, **{"a.b": "v"})`` -> the documents ``helm template`` prints; each of
    ``values`` is a values file or a dict of values."""
    folder = tmp_path_factory.mktemp("values")

    def template(*values: Path | dict[str, Any], **settings: str) -> list[Document]:
        args = ["template", "rel", str(CHART), "--namespace", "sse-enforcer"]
        args += ["--kube-version", KUBE_VERSION]
        for item in values:
            if isinstance(item, dict):
                path = folder / f"values-{len(list(folder.iterdir()))}.yaml"
                path.write_text(yaml.safe_dump(item))
                item = path  # noqa: PLW2901 - the dict, written where Helm reads it
            args += ["--values", str(item)]
        for name, value in settings.items():
            args += ["--set", f"{name}={value}"]
        done = run_helm(helm, *args)
        assert done.returncode == 0, done.stderr
        return [d for d in yaml.safe_load_all(done.stdout) if d]

    return template
