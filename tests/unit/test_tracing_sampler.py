import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from enforcer.telemetry import tracer_provider


@pytest.fixture(autouse=True)
def _no_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        monkeypatch.delenv(name, raising=False)


def recording(**kwargs: object) -> tuple[bool, bool]:
    provider = tracer_provider(Resource.create({}), **kwargs)  # type: ignore[arg-type]
    span = provider.get_tracer("t").start_span("x")
    span.end()
    provider.shutdown()
    return span.is_recording() or span.get_span_context().trace_flags.sampled, (
        span.get_span_context().is_valid
    )


def test_nothing_exports_nothing_is_recorded_but_trace_ids_remain() -> None:
    assert recording() == (False, True)


def test_an_exporter_records_every_span_by_default() -> None:
    assert recording(extra_exporter=InMemorySpanExporter()) == (True, True)


@pytest.mark.parametrize(("ratio", "sampled"), [("1.0", True), ("0.0", False)])
def test_standard_sampler_variables_are_honoured(
    monkeypatch: pytest.MonkeyPatch, ratio: str, sampled: bool
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", ratio)
    assert recording() == (sampled, True)
    assert recording(extra_exporter=InMemorySpanExporter()) == (sampled, True)
