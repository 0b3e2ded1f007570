"""A real headless browser for page tests: Chromium from the distribution's packages, driven by
its command line (``--dump-dom`` after scripts ran, ``--screenshot``).

``make browser`` (run by ``make test`` and CI) installs it. Missing, it fails the test under CI
(``CI=true``) and skips it on a developer machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    message = "no Chromium: run `make browser` (apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _run(args: list[str], profile: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",  # root in CI containers
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",  # let scripts finish before the DOM or picture is taken
        *args,
    ]
    return subprocess.run(  # noqa: S603 - a fixed browser command line
        command, capture_output=True, text=True, timeout=timeout, check=True
    )


def dump_dom(page: Path, profile: Path, timeout: float = 60) -> str:
    """The page's DOM after its scripts ran, serialised."""
    return _run(["--dump-dom", page.resolve().as_uri()], profile, timeout).stdout


def screenshot(page: Path, picture: Path, profile: Path, width: int = 1280, height: int = 2200,
               timeout: float = 60) -> Path:  # fmt: skip
    _run(
        ["--hide-scrollbars", f"--window-size={width},{height}", f"--screenshot={picture}",
         page.resolve().as_uri()],
        profile,
        timeout,
    )  # fmt: skip
    return picture


def keep_artifact(path: Path) -> None:
    """Copy ``path`` into ``$SSE_ENFORCER_ARTIFACTS`` (CI sets it to ``artifacts/``)."""
    folder = os.environ.get("SSE_ENFORCER_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, Path(folder) / path.name)
