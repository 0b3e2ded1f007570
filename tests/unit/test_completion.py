"""``enforcer completion``: bash sources the script and completes commands from the parser."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from enforcer.cli import build_parser
from enforcer.cli.completion import completion_script


def complete(shell: str, *words: str) -> list[str]:
    """What the completion offers after ``words`` (the last one is the word being typed)."""
    script = completion_script(build_parser(), "bash")
    quoted = " ".join(f"'{w}'" for w in ("enforcer", *words))
    program = (
        f"{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words)}\n"
        '_enforcer_complete; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(  # noqa: S603 - a fixed shell reading our own script
        [shell, "-c", program], capture_output=True, text=True, check=True
    )
    assert result.stderr == ""
    return result.stdout.split()


@pytest.mark.parametrize(
    ("words", "offered"),
    [
        (("",), {"run", "check", "scan", "dlq", "keys", "status", "completion", "--config"}),
        (("s",), {"scan", "status", "schemas"}),
        (("dlq", ""), {"replay", "--help"}),
        (("dlq", "replay", "--"), {"--limit", "--dry-run", "--help"}),
        (("--log-level", "DEBUG", "keys", "status", "--a"), {"--all-buckets"}),
        (("status", "--m"), {"--max-lag"}),
        (("completion", ""), {"bash", "zsh", "--help"}),
    ],
)
def test_bash_completes_commands_and_options(words: tuple[str, ...], offered: set[str]) -> None:
    got = complete("bash", *words)
    assert offered <= set(got)
    assert all(word.startswith(words[-1]) for word in got)
    if words[-1]:  # a prefix narrows to exactly the matching words
        assert set(got) == offered


def test_the_console_command_prints_a_script_bash_can_source() -> None:
    script = subprocess.run(
        [sys.executable, "-m", "enforcer", "completion", "bash"],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"},
    ).stdout  # fmt: skip
    check = subprocess.run(  # noqa: S603
        ["bash", "-c", f"{script}\ncomplete -p enforcer"],  # noqa: S607
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "_enforcer_complete" in check.stdout


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_loads_the_script_through_bashcompinit() -> None:
    script = completion_script(build_parser(), "zsh")
    result = subprocess.run(  # noqa: S603
        ["zsh", "-c", f"autoload -U compinit && compinit -u\n{script}\nprint ok"],  # noqa: S607
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
