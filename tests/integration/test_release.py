"""``make dist`` (deploy/release/dist) leaves exactly the release artifacts in dist/, each named
with the version, their SHA256SUMS verifies, BUILD-INFO names the commit, and the SBOM lists
every distribution of requirements.lock (the set the image installs) with its hashes."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from release import ROOT, Dist

# The first use of `dist` runs `make dist`, which builds the image (minutes the first time).
pytestmark = [pytest.mark.image, pytest.mark.timeout(2700)]

PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", re.M)
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def git(*args: str) -> str:
    return subprocess.run(  # noqa: S603 - git from PATH, fixed arguments
        ["git", *args],  # noqa: S607
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip


def test_dist_holds_exactly_the_release_artifacts(dist: Dist) -> None:
    v = dist.version
    assert dist.files() == sorted(
        [
            "BUILD-INFO.json",
            "SHA256SUMS",
            f"sse-enforcer-{v}-image.oci.tar",
            f"sse-enforcer-{v}.cdx.json",
            f"sse-enforcer-{v}.tgz",
            f"sse_enforcer-{v}-py3-none-any.whl",
            f"sse_enforcer-{v}.tar.gz",
        ]
    )


def test_the_checksums_cover_every_artifact_and_verify(dist: Dist) -> None:
    sums = (dist.folder / "SHA256SUMS").read_text().splitlines()
    named = sorted(line.split(maxsplit=1)[1].lstrip("*") for line in sums)
    assert named == [name for name in dist.files() if name != "SHA256SUMS"]
    check = subprocess.run(
        ["sha256sum", "--check", "SHA256SUMS"],  # noqa: S607 - coreutils, fixed arguments
        cwd=dist.folder, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def test_build_info_names_the_commit_and_version(dist: Dist) -> None:
    from enforcer import __version__

    assert dist.version == __version__
    revision = dist.info["revision"]
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", revision), revision
    assert revision.removesuffix("-dirty") == git("rev-parse", "HEAD")
    assert dist.info["source_date_epoch"] == int(git("log", "-1", "--format=%ct"))


def test_the_sbom_lists_the_locked_set_with_hashes(dist: Dist) -> None:
    lock = (ROOT / "requirements.lock").read_text()
    pinned = {name.lower().replace("_", "-"): version for name, version in PIN.findall(lock)}
    assert len(pinned) > 20  # the lock really was read
    bom = json.loads(dist.one("sse-enforcer-*.cdx.json").read_text())
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.6")
    root = bom["metadata"]["component"]
    assert (root["name"], root["version"]) == ("sse-enforcer", dist.version)
    assert root["purl"] == f"pkg:pypi/sse-enforcer@{dist.version}"
    assert root["licenses"] == [{"license": {"acknowledgement": "declared", "id": "Apache-2.0"}}]
    listed = {c["name"].lower().replace("_", "-"): c for c in bom["components"]}
    assert {name: c["version"] for name, c in listed.items()} == pinned
    for name, component in listed.items():
        assert component["purl"] == f"pkg:pypi/{name}@{pinned[name]}"
        hashes = {h["content"] for ref in component["externalReferences"] for h in ref["hashes"]}
        assert hashes, name
        assert hashes <= set(HASH.findall(lock)), name


def test_the_sbom_is_dated_by_the_commit_with_no_random_serial(dist: Dist) -> None:
    """What makes it reproducible: the same commit gives the same SBOM."""
    bom = json.loads(dist.one("sse-enforcer-*.cdx.json").read_text())
    assert "serialNumber" not in bom
    assert bom["metadata"]["timestamp"] == dist.info["created"].replace("Z", "+00:00")


def test_a_tag_that_is_not_the_version_is_refused_before_anything_is_built(dist: Dist) -> None:
    before = (dist.folder / "SHA256SUMS").read_bytes()
    done = subprocess.run(  # noqa: S603 - the project's own script
        [str(ROOT / "deploy" / "release" / "dist")],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "RELEASE_TAG": "v0.0.0-not-this"},
    )  # fmt: skip
    assert done.returncode == 1
    assert f"the tag v0.0.0-not-this is not v{dist.version}" in done.stderr
    assert (dist.folder / "SHA256SUMS").read_bytes() == before  # dist/ left as it was
