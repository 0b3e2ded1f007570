"""Helpers for the deployment tests: where the chart is, how to run Helm, picking documents."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "sse-enforcer"
ALL_FEATURES = CHART / "ci" / "all-features-values.yaml"
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
KUBE_VERSION = "1.30.0"  # the Kubernetes version the tests render and validate for

Document = dict[str, Any]
Render = Callable[..., list[Document]]


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own Helm build, fixed arguments
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False
    )


def by_kind(documents: list[Document], kind: str) -> list[Document]:
    return [d for d in documents if d["kind"] == kind]


def one(documents: list[Document], kind: str, name: str | None = None) -> Document:
    found = [d for d in by_kind(documents, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} found"
    return found[0]
