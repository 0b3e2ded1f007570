"""OpenTelemetry wiring: one tracer and the few metrics the enforcer reports.

The SDK is configured once by :func:`configure` from the CLI (standard ``OTEL_*`` variables pick
the exporter); library code only asks for the tracer and the instruments below, which are no-ops
until then. Attribute values are names and verdicts, never key material.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import SpanExporter

TRACER = trace.get_tracer("enforcer")
_METER = metrics.get_meter("enforcer")

EVENTS = _METER.create_counter("enforcer.events", description="Events handled, by verdict/action")
RETRIES = _METER.create_counter("enforcer.retries", description="Retried calls, by error class")
KEY_ALERTS = _METER.create_counter(
    "enforcer.key_alerts", description="Events that failed because their EK is missing or disabled"
)
OUTAGE_PAUSES = _METER.create_counter(
    "enforcer.outage_pauses", description="Consumption pauses, by dependency (storage, kms)"
)
CREDENTIAL_ALERTS = _METER.create_counter(
    "enforcer.credential_alerts",
    description="Pauses because S3 or the KMS refused the enforcer's identity, by dependency",
)


def configure(service_version: str, extra_exporter: SpanExporter | None = None) -> None:
    """Install the SDK providers. Exporters follow ``OTEL_TRACES_EXPORTER`` (default: none);
    ``extra_exporter`` (tests: an in-memory one) receives every span as well."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME", "sse-enforcer"),
            "service.version": service_version,
        }
    )
    provider = TracerProvider(resource=resource)
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "none")
    if exporter_name == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if extra_exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(extra_exporter))
    trace.set_tracer_provider(provider)
    _configure_metrics(resource)


def _configure_metrics(resource: Resource) -> None:
    """Metrics follow ``OTEL_METRICS_EXPORTER`` (``otlp`` | ``console``; default: none)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        MetricExporter,
        PeriodicExportingMetricReader,
    )

    exporter: MetricExporter
    name = os.environ.get("OTEL_METRICS_EXPORTER", "none")
    if name == "console":
        exporter = ConsoleMetricExporter()
    elif name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter()
    else:
        return
    reader = PeriodicExportingMetricReader(exporter)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


def context_from_headers(headers: Mapping[str, bytes | None] | None) -> Context | None:
    """Extract a W3C trace context from Kafka headers, if the producer sent one."""
    if not headers:
        return None
    # Kafka allows a header without a value; latin-1 decodes any bytes.
    carrier = {k.lower(): (v or b"").decode("latin-1") for k, v in headers.items()}
    return propagate.extract(carrier) if "traceparent" in carrier else None


@contextmanager
def step(name: str, **attributes: str | int | bool) -> Iterator[trace.Span]:
    """A child span for one step of an event's path (parse, resolve, head, rewrite, ...)."""
    with TRACER.start_as_current_span(name, attributes=attributes) as span:
        yield span


def current_trace_id() -> str:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""
