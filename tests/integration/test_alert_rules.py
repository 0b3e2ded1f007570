"""``promtool`` (built from the Prometheus module by deploy/tools/promtool, cached) checks the
alert rules and runs their unit tests on synthetic series. No server needed; it lives with the
integration tests because its first build takes minutes (CI builds it before pytest)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = ROOT / "deploy" / "tools" / "promtool"
RULES = ROOT / "deploy" / "helm" / "sse-enforcer" / "files" / "alerts.rules.yaml"
TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yaml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the project's own script, fixed arguments
        [str(PROMTOOL), *args], capture_output=True, text=True, check=False, timeout=1800
    )


@pytest.mark.timeout(1800)  # the first call builds promtool
def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


@pytest.mark.timeout(1800)
def test_the_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", str(TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
