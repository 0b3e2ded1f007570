"""Reading the enforcer's own ``/metrics`` text in unit tests (the SDK is installed once per
run by ``tests/conftest.py``, so counters are cumulative: compare before and after)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from enforcer.telemetry import render_metrics


def samples() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample now: (name, labels) → value."""
    _, body = render_metrics()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 if there are none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples().items() if n == name and wanted <= ls)
