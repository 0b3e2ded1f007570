"""Audit and dead-letter records: building them (pure) and publishing them (Kafka).

The producer is idempotent with ``acks=all``; :meth:`KafkaRecordSink.publish` returns only when
the broker has the record, so the consumer may commit the event's offset afterwards (DESIGN §4.7).
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from aiokafka import AIOKafkaProducer

from enforcer import __version__
from enforcer.config import KafkaSettings
from enforcer.events import IgnoredRecord, ObjectEvent
from enforcer.kafka import kafka_call, open_producer
from enforcer.pipeline import Outcome
from enforcer.policy import Mode, RequiredKey, effective_mode
from enforcer.records import AuditRecord, DeadLetterRecord
from enforcer.storage import ObjectSnapshot
from enforcer.telemetry import current_trace_id
from enforcer.verdict import Action, Verdict


class RecordSink(Protocol):
    async def publish_audit(self, record: AuditRecord) -> None: ...

    async def publish_dead_letter(self, record: DeadLetterRecord, key: bytes | None) -> None: ...


def audit_record(
    event: ObjectEvent,
    outcome: Outcome,
    *,
    default_mode: Mode,
    started: float,
    now: datetime,
    failure: str | None = None,
) -> AuditRecord:
    """The audit record of one handled event, in the effective mode (audit wins).

    ``started`` is the ``time.monotonic()`` the handling began; ``failure`` turns the record
    into action ``failed`` with that reason. The trace id is the current span's.
    """
    if failure is not None:  # keeps ``written``: a failure after the write names the new version
        outcome = replace(outcome, action=Action.FAILED, reason=failure, notes=[])
    observed, required, written = outcome.observed, outcome.required, outcome.written
    mode = effective_mode(default_mode, required.mode if required else None)
    reason = outcome.reason or ("; ".join(outcome.notes) if outcome.notes else None)
    return AuditRecord(
        event_id=event.event_id,
        event_name=event.event_name,
        bucket=event.bucket,
        key=event.key,
        version_id=(observed.version_id if observed else None) or event.version_id,
        observed_sse=observed.encryption.value if observed else None,
        observed_kms_key=observed.kms_key if observed else None,
        observed_etag=observed.etag or None if observed else None,
        required_key=required.key if required else None,
        rule_source=required.source if required else None,
        verdict=outcome.verdict,
        action=outcome.action,
        reason=reason,
        new_version_id=written.version_id if written else None,
        new_etag=written.etag if written else None,
        key_used=required.key if written and required else None,
        purged_version_id=outcome.purged_version_id,
        post_rewrite_error=outcome.post_rewrite_error,
        strategy=required.strategy.value if required else None,
        attempts=outcome.attempts,
        duration_ms=round((time.monotonic() - started) * 1000, 3),
        trace_id=current_trace_id(),
        mode=mode.value,
        timestamp=now,
        enforcer_version=__version__,
    )


def intent_record(
    event: ObjectEvent,
    snapshot: ObjectSnapshot,
    required: RequiredKey,
    verdict: Verdict | None,
    *,
    default_mode: Mode,
    now: datetime,
) -> AuditRecord:
    """The intent record published before a rewrite of ``snapshot`` under ``required``."""
    outcome = Outcome(
        verdict=verdict, action=Action.REWRITING, required=required, observed=snapshot
    )
    record = audit_record(event, outcome, default_mode=default_mode, started=time.monotonic(),
                          now=now)  # fmt: skip
    return record.model_copy(update={"duration_ms": 0.0})


def audit_for_ignored(
    record: IgnoredRecord, *, mode: str, trace_id: str, now: datetime
) -> AuditRecord:
    return AuditRecord(
        event_id=record.event_id,
        event_name=record.event_name,
        bucket=record.bucket,
        key=record.key,
        action=Action.SKIPPED,
        reason=record.reason,
        duration_ms=0.0,
        trace_id=trace_id,
        mode=mode,
        timestamp=now,
        enforcer_version=__version__,
    )


def dead_letter(
    value: bytes | None,
    key: bytes | None,
    *,
    topic: str,
    partition: int,
    offset: int,
    error_class: str,
    reason: str,
    attempts: int,
    first_seen: datetime,
    last_seen: datetime,
    event_id: str | None = None,
) -> DeadLetterRecord:
    payload, encoding = _text_or_base64(value)
    return DeadLetterRecord(
        original_payload=payload,
        payload_encoding=encoding,
        original_key=_text_or_base64(key)[0],
        topic=topic,
        partition=partition,
        offset=offset,
        error_class=error_class,
        reason=reason,
        attempts=attempts,
        first_seen=first_seen,
        last_seen=last_seen,
        event_id=event_id,
        enforcer_version=__version__,
    )


def _text_or_base64(value: bytes | None) -> tuple[str | None, str]:
    if value is None:
        return None, "utf-8"
    try:
        return value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(value).decode(), "base64"


class KafkaRecordSink:
    def __init__(self, producer: AIOKafkaProducer, settings: KafkaSettings) -> None:
        self._producer = producer
        self._audit_topic = settings.audit_topic
        self._dlq_topic = settings.dlq_topic

    async def publish_audit(self, record: AuditRecord) -> None:
        await self._send(self._audit_topic, record.model_dump_json().encode(), record.kafka_key)

    async def publish_dead_letter(self, record: DeadLetterRecord, key: bytes | None) -> None:
        await self._send(self._dlq_topic, record.model_dump_json().encode(), key)

    async def _send(self, topic: str, value: bytes, key: bytes | None) -> None:
        await kafka_call(self._producer.send_and_wait(topic, value=value, key=key),
                         f"publishing to {topic}")  # fmt: skip


@asynccontextmanager
async def open_kafka_sink(settings: KafkaSettings) -> AsyncIterator[KafkaRecordSink]:
    async with open_producer(settings, "audit") as producer:
        yield KafkaRecordSink(producer, settings)
