"""Metrics as Prometheus renders them: names, labels, and the values the shell records."""

from __future__ import annotations

import pytest
from scrape import samples, value

from enforcer.errors import KmsUnavailable
from enforcer.retrying import retry_transient
from enforcer.telemetry import render_metrics, step


def test_render_is_prometheus_text_with_process_metrics() -> None:
    content_type, body = render_metrics()
    assert content_type.startswith("text/plain")
    assert b"process_resident_memory_bytes" in body


def test_each_step_records_its_duration_in_seconds() -> None:
    before = value("enforcer_step_duration_seconds_count", step="head")
    with step("head", bucket="b"):
        pass
    with pytest.raises(RuntimeError), step("head"):  # a failing step is timed too
        raise RuntimeError
    assert value("enforcer_step_duration_seconds_count", step="head") == before + 2
    assert value("enforcer_step_duration_seconds_bucket", step="head", le="+Inf") == before + 2


async def test_failed_attempts_count_as_errors_by_dependency_and_class() -> None:
    failures = [KmsUnavailable("down"), KmsUnavailable("down")]

    async def call() -> str:
        if failures:
            raise failures.pop()
        return "ok"

    labels = {"dependency": "kms", "error_type": "kms_unavailable"}
    errors, retries = (
        value("enforcer_errors_total", **labels),
        value("enforcer_retries_total", error_type="kms_unavailable"),
    )
    assert await retry_transient(call) == ("ok", 3)
    assert value("enforcer_errors_total", **labels) == errors + 2
    assert value("enforcer_retries_total", error_type="kms_unavailable") == retries + 2


def test_no_instrument_name_carries_a_unit_twice_or_a_dot() -> None:
    for name, _ in samples():
        assert "." not in name and "_seconds_seconds" not in name
