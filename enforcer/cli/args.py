"""What every command shares: exit codes, the parser class, and argument checks that need no
network (a bad local argument is rejected before any connection is tried)."""

from __future__ import annotations

import argparse
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from enforcer.errors import ConfigError

#: The command line's exit codes: ok, failure, usage or configuration error.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

N = TypeVar("N", int, float)


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``enforcer scan: error: ... (see enforcer scan
    --help)``, exit 2) and help that keeps its examples as written."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_command(
    commands: Any, name: str, summary: str, *, description: str, examples: Sequence[str]
) -> Parser:
    """A subcommand with a one-line ``summary`` (in its parent's list), a ``description``
    paragraph and ``examples`` (shell lines, ``#`` comments allowed) in its own ``--help``."""
    parser: Parser = commands.add_parser(
        name,
        help=summary,
        description=textwrap.fill(" ".join(description.split()), width=88),
        epilog="examples:\n" + "\n".join(f"  {line}" for line in examples),
    )
    return parser


def parse_s3_url(url: str, *, need_key: bool) -> tuple[str, str]:
    """``s3://bucket/key`` → (bucket, key); the key may contain anything, including '/'."""
    if not url.startswith("s3://"):
        raise ConfigError(f"expected s3://bucket/key, got {url!r}")
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not bucket or (need_key and not key):
        raise ConfigError(f"expected s3://bucket/key, got {url!r}")
    return bucket, key


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = _number(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number of at least 0."""
    value = _number(text, int, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def non_negative_seconds(text: str) -> float:
    """An argparse type: seconds, 0 or more."""
    value = _number(text, float, "a number of seconds")
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_seconds(text: str) -> float:
    """An argparse type: seconds, more than 0."""
    value = _number(text, float, "a number of seconds")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _number(text: str, kind: type[N], what: str) -> N:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def check_writable(path: Path, flag: str) -> None:
    """``path`` can be written (created, or appended to): tried before any network call, so a
    typo fails at once instead of after the work. Missing parent folders are created; a file
    the check creates is removed again."""
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory")
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot write: {exc.strerror}") from None
    if not existed:
        path.unlink(missing_ok=True)


def check_readable_file(path: Path, flag: str) -> None:
    """``path`` is a file this process may read."""
    if not path.is_file():
        raise ConfigError(f"{flag} {path}: no such file")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{flag} {path}: not readable")
