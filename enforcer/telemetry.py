"""OpenTelemetry wiring: one tracer and the metrics the enforcer reports.

The SDK is configured once by :func:`configure` from the CLI (standard ``OTEL_*`` variables pick
the exporters); library code only asks for the tracer and the instruments below, which are no-ops
until then. Metrics are always readable in the Prometheus text format (:func:`render_metrics`,
served on ``/metrics`` of the health port), and also pushed over OTLP when
``OTEL_METRICS_EXPORTER=otlp``. Prometheus names follow from the OpenTelemetry ones (``.`` becomes
``_``, the unit and ``_total`` are appended): ``enforcer.events`` is ``enforcer_events_total``,
``enforcer.step.duration`` (seconds) is ``enforcer_step_duration_seconds``. docs/metrics.md lists
them all. Attribute values are names, verdicts and error classes, never key material.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from prometheus_client import CollectorRegistry

TRACER = trace.get_tracer("enforcer")
_METER = metrics.get_meter("enforcer")

EVENTS = _METER.create_counter(
    "enforcer.events", description="Object events handled, by verdict, action and mode"
)
#: One per object event a rule covers, by bucket and result: ``compliant`` (already under its
#: required key), ``fixed`` (re-encrypted, or a non-compliant old version purged), ``failed``,
#: ``noncompliant`` (left as it is: audit mode, SSE-C, a version the rule keeps). The notification
#: of the enforcer's own rewrite is not counted again.
OBJECTS = _METER.create_counter(
    "enforcer.objects", description="Object events in scope of a rule, by bucket and result"
)
RETRIES = _METER.create_counter("enforcer.retries", description="Retried calls, by error class")
KEY_ALERTS = _METER.create_counter(
    "enforcer.key_alerts",
    description="Events that failed because their EK is missing, disabled or refused",
)
OUTAGE_PAUSES = _METER.create_counter(
    "enforcer.outage_pauses", description="Consumption pauses, by dependency (storage, kms)"
)
CREDENTIAL_ALERTS = _METER.create_counter(
    "enforcer.credential_alerts",
    description="Pauses because S3 or the KMS refused the enforcer's identity, by dependency",
)

#: Seconds: from a few milliseconds (one HEAD) to minutes (a multi-GiB rewrite).
_STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
#: Seconds: from the object's write to its verified compliance, up to a backlog of hours.
_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 14400)

STEP_DURATION = _METER.create_histogram(
    "enforcer.step.duration",
    unit="s",
    description="Duration of each step of an event's path (parse, resolve, head, rewrite, ...)",
    explicit_bucket_boundaries_advisory=_STEP_BUCKETS,
)
EVENT_DURATION = _METER.create_histogram(
    "enforcer.event.duration",
    unit="s",
    description="Duration of handling one object event, by action and mode",
    explicit_bucket_boundaries_advisory=_STEP_BUCKETS,
)
COMPLIANCE_LATENCY = _METER.create_histogram(
    "enforcer.compliance.latency",
    unit="s",
    description="From the event's time (the PUT) to the re-encrypted object verified compliant",
    explicit_bucket_boundaries_advisory=_LATENCY_BUCKETS,
)
ERRORS = _METER.create_counter(
    "enforcer.errors",
    description="Failed calls to a dependency (kms, storage, kafka), by error class, "
    "each attempt counted",
)
DLQ_RECORDS = _METER.create_counter(
    "enforcer.dlq.records", description="Records written to the dead-letter topic, by error class"
)
CONSUMER_LAG = _METER.create_gauge(
    "enforcer.consumer.lag",
    description="Records on a partition after this member's committed offset (end minus committed)",
)
IN_FLIGHT = _METER.create_gauge(
    "enforcer.records.in_flight", description="Kafka records fetched and not yet finished"
)
PAUSED = _METER.create_gauge(
    "enforcer.paused", description="1 while consumption is paused for a KMS or storage outage"
)
BACKFILL_PAUSED = _METER.create_gauge(
    "enforcer.backfill.paused",
    description="1 while the backfill topic waits: for live notifications, or for an outage",
)
LEAN_FALLBACKS = _METER.create_counter(
    "enforcer.s3.lean_fallbacks",
    description="S3 calls the lean request path handed to aiobotocore, by operation and reason "
    "(an error status, a transport error, a parameter it does not send)",
)
FORWARD_MESSAGES = _METER.create_counter(
    "enforcer.forward.messages",
    description="SQS messages handled by enforcer forward sqs, by result "
    "(forwarded, skipped, unreadable, kept)",
)
POLICY_BUCKET_MISSING = _METER.create_gauge(
    "enforcer.policy.bucket_missing",
    description="Per policy bucket: 1 when it did not exist at start (its events are audited "
    "as gone), else 0",
)
KEY_AVAILABLE = _METER.create_gauge(
    "enforcer.key.available",
    description="Per EK: 1 after its last use worked, 0 after it was missing, disabled or refused",
)
KEY_PARKED = _METER.create_gauge(
    "enforcer.key.parked",
    description="Per EK: events parked because the key is unusable (missing, disabled or refused): "
    "waiting for it to work again, or for their patience to end (then dead-lettered)",
)

_DEPENDENCY = {
    "kms_unavailable": "kms",
    "key_missing": "kms",
    "key_disabled": "kms",
    "storage_unavailable": "storage",
    "storage_rejected": "storage",
    "precondition_failed": "storage",
    "object_unreadable": "storage",
    "integrity": "storage",
    "kafka_unavailable": "kafka",
    "queue_unavailable": "sqs",
}


def record_error(code: str) -> None:
    """Count one failed dependency call by its error class (``EnforcerError.code``)."""
    ERRORS.add(1, {"dependency": _DEPENDENCY.get(code, "other"), "error_type": code})


_registry: CollectorRegistry | None = None


def configure(service_version: str, extra_exporter: SpanExporter | None = None) -> None:
    """Install the SDK providers. Exporters follow ``OTEL_TRACES_EXPORTER`` (default: none);
    ``extra_exporter`` (tests: an in-memory one) receives every span as well."""
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME", "sse-enforcer"),
            "service.version": service_version,
        }
    )
    trace.set_tracer_provider(tracer_provider(resource, extra_exporter))
    _configure_metrics(resource)


def tracer_provider(
    resource: Resource, extra_exporter: SpanExporter | None = None
) -> TracerProvider:
    """The SDK tracer provider with the exporters the environment names.

    Sampling follows the standard ``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG``. When
    nothing exports spans and no sampler is named, spans are not recorded at all: each still
    carries a trace id (audit records name it, and it propagates), but costs almost nothing.
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "none")
    exporting = exporter_name in ("console", "otlp") or extra_exporter is not None
    named = bool(os.environ.get("OTEL_TRACES_SAMPLER"))
    # sampler=None: the SDK reads OTEL_TRACES_SAMPLER(_ARG) itself (default parentbased_always_on)
    provider = TracerProvider(resource=resource, sampler=None if exporting or named else ALWAYS_OFF)
    if exporter_name == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if extra_exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(extra_exporter))
    return provider


def _configure_metrics(resource: Resource) -> None:
    """A Prometheus reader always (for ``/metrics``); a push exporter as well when
    ``OTEL_METRICS_EXPORTER`` says so (``otlp`` | ``console``; default: none)."""
    global _registry  # noqa: PLW0603 - the process has one meter provider, set once
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        MetricExporter,
        PeriodicExportingMetricReader,
    )
    from prometheus_client import CollectorRegistry, ProcessCollector

    if _registry is not None:  # already installed: OpenTelemetry keeps the first provider
        return
    _registry = CollectorRegistry()
    ProcessCollector(registry=_registry)  # process_cpu_seconds_total, resident memory, fds
    readers: list[MetricReader] = [
        PrometheusMetricReader(scope_info_enabled=False, registry=_registry)
    ]
    exporter: MetricExporter | None = None
    name = os.environ.get("OTEL_METRICS_EXPORTER", "none")
    if name == "console":
        exporter = ConsoleMetricExporter()
    elif name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter()
    if exporter is not None:
        readers.append(PeriodicExportingMetricReader(exporter))
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))


def render_metrics() -> tuple[str, bytes]:
    """The current metrics in the Prometheus text format: (content type, body)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    if _registry is None:
        return CONTENT_TYPE_LATEST, b""
    return CONTENT_TYPE_LATEST, generate_latest(_registry)


def context_from_headers(headers: Mapping[str, bytes | None] | None) -> Context | None:
    """Extract a W3C trace context from Kafka headers, if the producer sent one."""
    if not headers:
        return None
    # Kafka allows a header without a value; latin-1 decodes any bytes.
    carrier = {k.lower(): (v or b"").decode("latin-1") for k, v in headers.items()}
    return propagate.extract(carrier) if "traceparent" in carrier else None


@contextmanager
def step(name: str, **attributes: str | int | bool) -> Iterator[trace.Span]:
    """A child span for one step of an event's path (parse, resolve, head, rewrite, ...); its
    duration also goes to ``enforcer.step.duration``."""
    started = time.perf_counter()
    current = trace.get_current_span()
    try:
        if current.get_span_context().is_valid and not current.is_recording():
            yield current  # the event's span is not sampled, so its steps would not be either
        else:
            with TRACER.start_as_current_span(name, attributes=attributes) as span:
                yield span
    finally:
        STEP_DURATION.record(time.perf_counter() - started, {"step": name})


def current_trace_id() -> str:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""
