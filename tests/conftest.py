"""Fixtures for every test: a clean environment and zero retry waits."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from enforcer import retrying

#: Environment variables that configure the enforcer or its telemetry; a developer's shell
#: (e.g. after ``eval "$(deploy/local/stack env)"``) must not leak them into tests.
LEAKING_PREFIXES = ("ENFORCER_", "OTEL_")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove ``ENFORCER_*`` and ``OTEL_*`` variables for the test; restored afterwards.

    Integration tests get the enforcer's settings from ``stack.enforcer_env`` instead.
    """
    for name in list(os.environ):
        if name.startswith(LEAKING_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def zero_retry_waits() -> Iterator[None]:
    """Retries in ``enforcer.retrying`` wait zero seconds during the test."""
    retrying.set_testing(True)
    try:
        yield
    finally:
        retrying.set_testing(False)
