"""Running the real ``enforcer`` console command against the local stack, as a subprocess.

Exit codes and stdout are what a runbook or a probe sees, so the operations commands are tested
through the installed entry point (``.venv/bin/enforcer``), with the stack's ``ENFORCER_*``
settings plus per-test topics, and never in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import EnforcerRun

ENFORCER = Path(sys.executable).with_name("enforcer")


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Cli(EnforcerRun):
    """``enforcer`` as a subprocess with the stack's settings and this run's group and topics."""

    def env(self, **overrides: str) -> dict[str, str]:
        # scan checkpoints without --checkpoint go below XDG_STATE_HOME: not the runner's home
        state = {"XDG_STATE_HOME": str(Path(tempfile.gettempdir()) / "sse-enforcer-test-state")}
        return {**os.environ, **state, **self.stack.enforcer_env, **self.overrides(), **overrides}

    def __call__(self, *args: str, timeout: float = 90.0, **overrides: str) -> CliResult:
        proc = subprocess.run(  # noqa: S603 - our own entry point, fixed arguments
            [str(ENFORCER), "--log-level", "WARNING", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(**overrides),
            check=False,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)
