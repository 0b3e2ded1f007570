"""The alert rules and the dashboard speak about metrics the enforcer really exports, and every
alert leads to a runbook that exists. (``promtool`` checks and tests the rules themselves:
tests/integration/test_alert_rules.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry import metrics
from scrape import samples

from enforcer import telemetry

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "helm" / "sse-enforcer" / "files" / "alerts.rules.yaml"
DASHBOARD = ROOT / "deploy" / "helm" / "sse-enforcer" / "files" / "sse-enforcer-dashboard.json"
#: Metrics other programs export that the rules may use (documented in docs/metrics.md).
FOREIGN = {"minio_s3_requests_total", "kafka_consumergroup_lag"}
METRIC = re.compile(r"\b((?:enforcer|process|minio|kafka)_[a-z0-9_]+)\b")


def exported_names() -> set[str]:
    """Every sample name the enforcer exports, after one value went into each instrument."""
    for instrument in vars(telemetry).values():
        if isinstance(instrument, metrics.Counter):
            instrument.add(0)
        elif isinstance(instrument, metrics.Histogram):
            instrument.record(0.0)
        elif isinstance(instrument, metrics._Gauge):  # the API exports it under this name
            instrument.set(0)
    return {name for name, _ in samples()}


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_metric_used_is_exported(source: str) -> None:
    expressions = [r["expr"] for r in rules()] if source == "rules" else dashboard_expressions()
    used = {name for expr in expressions for name in METRIC.findall(expr)}
    assert used, f"no metric found in the {source}"
    assert used - exported_names() - FOREIGN == set()


def test_the_exported_names_include_what_operators_page_on() -> None:
    assert {
        "enforcer_events_total",
        "enforcer_step_duration_seconds_bucket",
        "enforcer_compliance_latency_seconds_bucket",
        "enforcer_consumer_lag",
        "enforcer_paused",
        "enforcer_records_in_flight",
        "enforcer_key_available",
        "enforcer_dlq_records_total",
        "enforcer_errors_total",
        "enforcer_retries_total",
    } <= exported_names()


def test_every_alert_has_a_runbook_that_exists() -> None:
    for rule in rules():
        url = rule["annotations"]["runbook_url"]
        _, _, path = url.partition("/blob/main/")
        assert path.startswith("runbooks/") and (ROOT / path).is_file(), (rule["alert"], url)


def test_every_alert_names_its_severity_and_what_is_wrong() -> None:
    for rule in rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
