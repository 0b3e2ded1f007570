"""What a platform team checks first: the license, the metadata, and a lock file for the image
that still satisfies the dependency ranges in pyproject.toml (``make lock`` rewrites it)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", re.M)


def locked() -> dict[str, Version]:
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    return {canonicalize_name(name): Version(version) for name, version in PIN.findall(text)}


def test_the_license_is_apache_2_and_ships_in_the_wheel_metadata() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert PROJECT["project"]["license"] == "Apache-2.0"  # PEP 639 expression
    assert PROJECT["project"]["license-files"] == ["LICENSE"]
    assert PROJECT["build-system"]["requires"] == ["setuptools>=77"]
    assert {"Homepage", "Changelog"} <= PROJECT["project"]["urls"].keys()


def test_only_the_package_goes_into_the_wheel() -> None:
    assert PROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["enforcer*"]
    assert not (ROOT / "enforcer" / "fakes.py").exists()
    assert not list((ROOT / "enforcer").rglob("test*.py"))


def test_the_lock_pins_every_dependency_within_its_range() -> None:
    pins = locked()
    wanted = [
        *PROJECT["project"]["dependencies"],
        *PROJECT["project"]["optional-dependencies"]["msk"],
    ]
    for line in wanted:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"requirements.lock lacks {name}: run make lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside {requirement.specifier}: "
            "run make lock"
        )


def test_every_pin_carries_hashes() -> None:
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    pinned = [b for b in blocks if PIN.match(b)]
    assert pinned and all("--hash=sha256:" in b for b in pinned)
    assert len(pinned) == len(locked())
