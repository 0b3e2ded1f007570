"""The release artifacts of ``make dist`` (deploy/release/dist), for the tests that consume them.

Building them takes minutes the first time (the container image), so a test session builds
``dist/`` once, and reuses a ``dist/`` already built from the same commit of a clean tree whose
checksums still verify.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"


@dataclass(frozen=True)
class Dist:
    folder: Path
    info: dict[str, Any]  #: BUILD-INFO.json: version, revision, created, image, image_id

    @property
    def version(self) -> str:
        version: str = self.info["version"]
        return version

    def one(self, pattern: str) -> Path:
        """The one artifact whose name matches ``pattern`` (a glob)."""
        found = sorted(self.folder.glob(pattern))
        assert len(found) == 1, f"{pattern}: {[p.name for p in found]}"
        return found[0]

    def files(self) -> list[str]:
        return sorted(p.name for p in self.folder.iterdir() if p.is_file())


def _git(*args: str) -> str:
    return subprocess.run(  # noqa: S603 - git from PATH, fixed arguments
        ["git", *args],  # noqa: S607
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip


def _reusable() -> bool:
    """``dist/`` was built from HEAD of a clean tree and is intact."""
    info_file = DIST / "BUILD-INFO.json"
    if not (info_file.is_file() and (DIST / "SHA256SUMS").is_file()):
        return False
    if _git("status", "--porcelain", "--untracked-files=no"):
        return False  # uncommitted changes: no way to tell which state dist/ was built from
    if json.loads(info_file.read_text())["revision"] != _git("rev-parse", "HEAD"):
        return False
    check = subprocess.run(
        ["sha256sum", "--check", "--quiet", "SHA256SUMS"],  # noqa: S607
        cwd=DIST, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    return check.returncode == 0


def build_dist() -> Dist:
    """``make dist`` unless ``dist/`` of this commit is already there."""
    if not _reusable():
        done = subprocess.run(
            ["make", "dist"],  # noqa: S607 - the project's own target
            cwd=ROOT, capture_output=True, text=True, check=False, timeout=2400,
        )  # fmt: skip
        assert done.returncode == 0, f"make dist failed:\n{done.stderr[-5000:]}"
    return Dist(DIST, json.loads((DIST / "BUILD-INFO.json").read_text()))
