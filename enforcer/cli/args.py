"""What every command shares: exit codes and argument parsing helpers."""

from __future__ import annotations

import argparse

from enforcer.errors import ConfigError

#: The command line's exit codes: ok, failure, usage or configuration error.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


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
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
