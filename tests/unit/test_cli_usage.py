"""The command line as a user meets it: every command explains itself with an example, and a
bad local argument or setting is one line and exit 2 — at once, before any connection.

"Before any connection" is proven, not timed: every server setting points at a socket that
listens but never answers (a client that connected would hang there), and after the command the
socket must have no connection waiting. The commands run in-process (``main``); the console
entry point itself is run for the Kafka-unreachable line and a schemas write.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from enforcer import telemetry
from enforcer.cli import build_parser, main

ENFORCER = Path(sys.executable).with_name("enforcer")


def subcommands(
    parser: argparse.ArgumentParser, path: str = "enforcer"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield f"{path} {name}", child
                yield from subcommands(child, f"{path} {name}")


def test_every_command_has_a_description_and_an_example() -> None:
    found = dict(subcommands(build_parser()))
    assert {"enforcer run", "enforcer scan", "enforcer report", "enforcer dlq replay",
            "enforcer keys status", "enforcer forward sqs", "enforcer schemas",
            "enforcer check", "enforcer status"} <= set(found)  # fmt: skip
    for path, parser in found.items():
        text = parser.format_help()
        assert parser.description and len(parser.description) > 30, path
        examples = text.split("examples:\n", 1)[1]
        assert f"  {path}" in examples or f"{path} " in examples, f"{path}: no example\n{text}"


@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    """A loopback socket that accepts connections (the kernel completes them) and never
    answers: a client that got this far would wait for its timeout."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server


@dataclass(frozen=True)
class Done:
    returncode: int
    stderr: str


def run_cli(
    server: socket.socket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *args: str,
    **env: str,
) -> Done:
    """``enforcer ARGS`` in this process, every server setting at ``server``."""
    address = f"127.0.0.1:{server.getsockname()[1]}"
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    settings = {
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "ENFORCER_S3__ENDPOINT_URL": f"http://{address}",
        "ENFORCER_S3__ACCESS_KEY_ID": "a",
        "ENFORCER_S3__SECRET_ACCESS_KEY": "b",
        "ENFORCER_KAFKA__BOOTSTRAP_SERVERS": address,
        **env,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    # The process-wide tracer provider is the session's (tests/conftest.py): installing it
    # again would only log that it cannot.
    monkeypatch.setattr(telemetry, "configure", lambda version: None)
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    ready, _, _ = select.select([server], [], [], 0)
    assert not ready, f"{args}: connected to a server before rejecting the argument"
    return Done(code, capsys.readouterr().err)


def assert_one_line_usage_error(done: Done, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0]


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    """A regular file: nothing can be created below it, not even by root."""
    path = tmp_path / "a-file"
    path.write_text("x")
    return path


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["scan", "--inventory", "/missing/manifest.json"], ["--inventory", "no such file"]),
        (["scan", "s3://b", "--checkpoint", "{file}/sub/cp.json"], ["--checkpoint"]),
        (["scan", "s3://b", "--output", "csv", "--output-file", "{file}/o.csv"],
         ["--output-file"]),
        (["scan", "s3://b", "--progress-interval", "-1"], ["--progress-interval"]),
        (["scan", "s3://b", "--progress-interval", "nan"], ["--progress-interval"]),
        (["run", "--drain", "--idle", "-3"], ["--idle"]),
        (["status", "--max-lag", "-5"], ["--max-lag"]),
        (["dlq", "replay", "--limit", "0"], ["--limit"]),
        (["report", "--input", "/missing.jsonl"], ["--input"]),
        (["report", "--html", "{file}/r.html"], ["--html"]),
        (["decrypt", "s3://b/k", "-o", "{file}/plain"], ["--output"]),
        (["schemas", "--out", "{file}"], ["--out"]),
        (["schemas", "--out", "{file}/schemas"], ["--out"]),
        (["forward", "sqs"], ["--queue-url"]),
        (["forward", "sqs", "--queue-url", "sqs-without-scheme"], ["--queue-url"]),
        (["check", "not-an-s3-url"], ["s3://"]),
    ],
)  # fmt: skip
def test_local_arguments_are_rejected_before_any_connection(
    silent_server: socket.socket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    a_file: Path,
    args: list[str],
    words: list[str],
) -> None:
    args = [arg.replace("{file}", str(a_file)) for arg in args]
    done = run_cli(silent_server, tmp_path, monkeypatch, capsys, *args)
    assert_one_line_usage_error(done, *words)


@pytest.mark.parametrize(
    "args",
    [["run"], ["check", "s3://b/k"], ["decrypt", "s3://b/k"], ["keys", "status"],
     ["keys", "status", "--bucket", "b"]],
)  # fmt: skip
def test_aws_kms_without_a_region_is_one_line(
    silent_server: socket.socket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:
    done = run_cli(silent_server, tmp_path, monkeypatch, capsys, *args, ENFORCER_KMS__KIND="aws")
    assert_one_line_usage_error(done, "ENFORCER_KMS__REGION")


def test_status_says_kafka_is_unreachable_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"
        done = subprocess.run(  # noqa: S603 - our entry point
            [str(ENFORCER), "status"], capture_output=True, text=True, timeout=60, check=False,
            env={"PATH": os.environ["PATH"], "ENFORCER_KAFKA__BOOTSTRAP_SERVERS": address},
        )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert "kafka_unavailable" in done.stderr and address in done.stderr


def test_schemas_into_a_new_nested_folder(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    done = subprocess.run(  # noqa: S603
        [str(ENFORCER), "schemas", "--out", str(out)], capture_output=True, text=True, check=True
    )
    assert (out / "config.json").is_file() and str(out / "config.json") in done.stdout
