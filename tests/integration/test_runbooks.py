"""The runbooks' and the production guide's commands work: every ```bash block marked
``<!-- tested -->`` runs, in order, against the local stack, and does what its marker promises.

Beside a local-stack block, a ```kubectl block gives the same ``enforcer`` commands as a
Kubernetes operator runs them (``kubectl -n sse-enforcer exec deploy/sse-enforcer -- enforcer …``).
Those are not run: they must name exactly the ``enforcer`` commands of the bash block before them,
and those commands must parse with the real command line parser.

A marker may carry ``exit=N`` (default 0) and any number of ``expect="text"`` / ``expect='text'``
(each must appear in the block's stdout or stderr). Each block runs in its own
``bash -euo pipefail`` from the repository root with the environment ``runbooks/README.md`` sets
up (the stack's ``env``, ``.venv/bin`` and the stack's binaries on PATH, ``MC_HOST_local``), plus
``BUCKET``/``EK``/``NEW_EK`` naming a healthy bucket and its key, private Kafka names, and a
private ``TMPDIR`` for the rehearsals' state. Runbooks that stop a stack component run under the
machine-wide component lock and restart what they stopped, whatever happens.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import (
    REPO_ROOT,
    MakeBucket,
    MakeKey,
    StackEnv,
    components_locked,
    parse_stack_env,
    require_stop_mark,
    stack_command,
)

RUNBOOKS = REPO_ROOT / "runbooks"
RUNBOOK_FILES = sorted(RUNBOOKS.glob("*.md"))
PRODUCTION_GUIDE = REPO_ROOT / "docs" / "production.md"
TESTED_FILES = [*RUNBOOK_FILES, PRODUCTION_GUIDE]
BASH_FENCE = re.compile(r"^[ \t]*```bash[ \t]*$", re.M)
KUBECTL_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)```kubectl[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S
)
KUBECTL_EXEC = "kubectl -n sse-enforcer exec deploy/sse-enforcer -- "
#: An ``enforcer`` command at the start of a shell line (after an optional ``VAR=value``).
ENFORCER_LINE = re.compile(r"^\s*(?:[A-Z_]+=\S+\s+)*(enforcer\s[^|\n]*)", re.M)
REHEARSAL = re.compile(r"^## Rehearsal", re.M)
TESTED_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)<!--\s*tested\b(?P<attrs>[^>]*?)-->[ \t]*\n"
    r"(?P=indent)```bash[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.M | re.S,
)
EXPECT = re.compile(r"""expect=(?:"([^"]*)"|'([^']*)')""")
STOPS = re.compile(r"deploy/local/stack\s+stop\s+(kafka|minio|kes)\b")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    body: str
    exit_code: int
    expects: tuple[str, ...]

    def where(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"


def marked_blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in TESTED_BLOCK.finditer(text):
        indent, attrs = match["indent"], match["attrs"]
        body = "".join(line.removeprefix(indent) for line in match["body"].splitlines(True))
        exit_code = re.search(r"\bexit=(\d+)", attrs)
        blocks.append(
            Block(
                path=path,
                line=text.count("\n", 0, match.start()) + 1,
                body=body,
                exit_code=int(exit_code[1]) if exit_code else 0,
                expects=tuple(a or b for a, b in EXPECT.findall(attrs)),
            )
        )
    return blocks


def test_every_bash_block_in_the_runbooks_is_tested() -> None:
    assert RUNBOOK_FILES, "no runbooks found"
    for path in TESTED_FILES:
        fences = len(BASH_FENCE.findall(path.read_text(encoding="utf-8")))
        assert fences == len(marked_blocks(path)), f"{path.name}: a bash block is not marked"


def test_the_index_links_every_runbook() -> None:
    index = (RUNBOOKS / "README.md").read_text(encoding="utf-8")
    for path in RUNBOOK_FILES:
        if path.name != "README.md":
            assert f"]({path.name})" in index, f"README.md does not link {path.name}"


def enforcer_commands(body: str) -> list[str]:
    """The ``enforcer …`` invocations of a shell block, up to any pipe, whitespace-normalised."""
    return [" ".join(m.split()) for m in ENFORCER_LINE.findall(body)]


def kubectl_blocks(path: Path) -> list[tuple[int, str]]:
    """(offset, body) of every ```kubectl block."""
    text = path.read_text(encoding="utf-8")
    return [(m.start(), m["body"]) for m in KUBECTL_BLOCK.finditer(text)]


@pytest.mark.parametrize("path", TESTED_FILES, ids=lambda p: p.name)
def test_kubectl_forms_are_the_tested_commands_and_parse(path: Path) -> None:
    from enforcer.cli import build_parser

    text = path.read_text(encoding="utf-8")
    tested = list(TESTED_BLOCK.finditer(text))
    for offset, body in kubectl_blocks(path):
        lines = [line.strip() for line in body.splitlines()]
        lines = [line for line in lines if line and not line.startswith("#")]
        assert lines and all(line.startswith(KUBECTL_EXEC) for line in lines), body
        commands = [
            " ".join(line.removeprefix(KUBECTL_EXEC).split("|")[0].split()) for line in lines
        ]
        before = [m for m in tested if m.end() <= offset]
        assert before, f"{path.name}: a kubectl block with no tested block before it"
        assert commands == enforcer_commands(before[-1]["body"]), (
            f"{path.name}: the kubectl block does not match the bash block before it"
        )
        for command in commands:
            words = [w.strip("\"'") for w in command.split()[1:]]
            code: int | str | None = 0
            try:
                build_parser().parse_args(words)
            except SystemExit as exc:  # --help/--version exit 0; a usage error exits 2
                code = exc.code
            assert code == 0, f"{path.name}: enforcer rejects {command!r}"


@pytest.mark.parametrize("path", TESTED_FILES, ids=lambda p: p.name)
def test_every_operator_command_has_a_kubectl_form(path: Path) -> None:
    """Outside the local-stack rehearsals, each tested block that runs ``enforcer`` is followed
    by its kubectl form."""
    text = path.read_text(encoding="utf-8")
    rehearsal = REHEARSAL.search(text)
    end = rehearsal.start() if rehearsal else len(text)
    kubectl = [offset for offset, _ in kubectl_blocks(path)]
    for match in TESTED_BLOCK.finditer(text, 0, end):
        if not enforcer_commands(match["body"]):
            continue
        following = text[match.end() :].lstrip()
        assert following.startswith("```kubectl") and any(o > match.end() for o in kubectl), (
            f"{path.name}:{text.count(chr(10), 0, match.start()) + 1}: no kubectl form follows"
        )


@pytest.fixture
def runbook_env(
    stack: StackEnv, make_key: MakeKey, make_bucket: MakeBucket, tmp_path: Path
) -> dict[str, str]:
    """What ``runbooks/README.md`` sets up, plus a healthy bucket, a policy file naming it (as a
    deployment has) and private Kafka names."""
    env, bin_dir = parse_stack_env(stack_command("env", timeout=60))
    venv_bin = str(Path(sys.executable).parent)
    ek = make_key("runbook")
    tag = uuid.uuid4().hex[:10]
    bucket = make_bucket(default_key=ek, notify=False)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"rules:\n  - {{bucket: {bucket}, key: {ek}}}\n", encoding="utf-8")
    return {
        **os.environ,
        **env,
        "PATH": os.pathsep.join(p for p in (venv_bin, bin_dir, os.environ["PATH"]) if p),
        "MC_HOST_local": "http://{}:{}@{}".format(
            stack.admin_access_key,
            stack.admin_secret_key,
            stack.s3_endpoint.removeprefix("http://"),
        ),
        "TMPDIR": str(tmp_path),
        "BUCKET": bucket,
        "EK": ek,
        "NEW_EK": ek,
        "ENFORCER_POLICY_FILE": str(policy),
        "ENFORCER_KAFKA__GROUP_ID": f"runbook-{tag}",
        "ENFORCER_KAFKA__AUDIT_TOPIC": f"runbook-audit-{tag}",
        "ENFORCER_KAFKA__DLQ_TOPIC": f"runbook-dlq-{tag}",
        "ENFORCER_KAFKA__BACKFILL_TOPIC": f"runbook-backfill-{tag}",
    }


@contextmanager
def _restarting(stopped: set[str]) -> Iterator[None]:
    """Hold the component lock; start every component the runbook stops, even on failure."""
    require_stop_mark(f"stopping {', '.join(sorted(stopped))}")
    with components_locked(timeout=300):
        try:
            yield
        finally:
            for component in sorted(stopped):
                stack_command("start", component)


def run_block(block: Block, env: dict[str, str]) -> None:
    proc = subprocess.run(  # noqa: S603 - the runbook's own commands, on the local stack
        ["bash", "-euo", "pipefail", "-c", block.body],  # noqa: S607
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = proc.stdout + proc.stderr
    context = f"{block.where()} exited {proc.returncode}\n{block.body}\n--- output:\n{output}"
    assert proc.returncode == block.exit_code, f"expected exit {block.exit_code}: {context}"
    for text in block.expects:
        assert text in output, f"expected {text!r} in the output: {context}"


#: The files again, those whose blocks stop a stack component marked ``stops_stack``.
RUN_PARAMS = [
    pytest.param(path, marks=pytest.mark.stops_stack)
    if STOPS.search(path.read_text(encoding="utf-8"))
    else path
    for path in TESTED_FILES
]


@pytest.mark.timeout(900)
@pytest.mark.main_topic  # the blocks bind buckets to arn:minio:sqs::_:kafka
@pytest.mark.parametrize("path", RUN_PARAMS, ids=lambda p: p.name)
def test_runbook_commands_work(path: Path, runbook_env: dict[str, str]) -> None:
    blocks = marked_blocks(path)
    assert blocks, f"{path.name} has no tested commands"
    stopped = {c for block in blocks for c in STOPS.findall(block.body)}
    with ExitStack() as stack:
        if stopped:
            stack.enter_context(_restarting(stopped))
        for block in blocks:
            run_block(block, runbook_env)
