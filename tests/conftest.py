"""Fixtures for every test: a clean environment, zero retry waits, recorded spans."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from release import Dist, build_dist

from enforcer import __version__, retrying, telemetry

#: Environment variables that configure the enforcer or its telemetry; a developer's shell
#: (e.g. after ``eval "$(deploy/local/stack env)"``) must not leak them into tests.
LEAKING_PREFIXES = ("ENFORCER_", "OTEL_")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove ``ENFORCER_*`` and ``OTEL_*`` variables for the test; restored afterwards.

    Integration tests get the enforcer's settings from ``stack.enforcer_env`` instead. Every
    ``enforcer run`` a test starts is one process (``ENFORCER_WORKERS=1``: the default would be
    the machine's cores) unless the test asks for workers (tests/integration/test_workers.py).
    """
    for name in list(os.environ):
        if name.startswith(LEAKING_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ENFORCER_WORKERS", "1")


@pytest.fixture(autouse=True)
def zero_retry_waits() -> Iterator[None]:
    """Retries in ``enforcer.retrying`` wait zero seconds during the test."""
    retrying.set_testing(True)
    try:
        yield
    finally:
        retrying.set_testing(False)


@pytest.fixture(scope="session", autouse=True)
def span_exporter() -> InMemorySpanExporter:
    """The OpenTelemetry SDK, installed once per run through the product's own wiring, with
    every span also kept in memory. (The global tracer provider can be set only once per
    process, so no test module may install its own.)"""
    exporter = InMemorySpanExporter()
    with pytest.MonkeyPatch.context() as patch:  # no exporter from the developer's shell
        for name in [n for n in os.environ if n.startswith("OTEL_")]:
            patch.delenv(name)
        telemetry.configure(__version__, extra_exporter=exporter)
    return exporter


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    """The spans finished during this test."""
    span_exporter.clear()
    return span_exporter


@pytest.fixture(scope="session")
def dist() -> Dist:
    """The release artifacts of this commit (tests/release.py): ``make dist`` once per session,
    minutes the first time (the container image). Tests that use it need a long timeout."""
    return build_dist()
