"""Audit and dead-letter records: building them (pure) and publishing them (Kafka).

The producer is idempotent with ``acks=all``; :meth:`KafkaRecordSink.publish` returns only when
the broker has the record, so the consumer may commit the event's offset afterwards (at-least-once).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Protocol

from aiokafka import AIOKafkaProducer

from enforcer import __version__
from enforcer.config import KafkaSettings
from enforcer.errors import RecordTooLarge
from enforcer.events import IgnoredRecord, ObjectEvent
from enforcer.kafka import kafka_call, open_producer
from enforcer.pipeline import Outcome
from enforcer.policy import Mode, effective_mode
from enforcer.records import AuditRecord, DeadLetterRecord
from enforcer.telemetry import current_trace_id
from enforcer.verdict import Action

log = logging.getLogger(__name__)


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
    if failure is not None:
        outcome = Outcome(
            verdict=outcome.verdict,
            action=Action.FAILED,
            required=outcome.required,
            observed=outcome.observed,
            reason=failure,
            attempts=outcome.attempts,
        )
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
        required_key=required.key if required else None,
        rule_source=required.source if required else None,
        verdict=outcome.verdict,
        action=outcome.action,
        reason=reason,
        new_version_id=written.version_id if written else None,
        new_etag=written.etag if written else None,
        key_used=required.key if written and required else None,
        purged_version_id=outcome.purged_version_id,
        strategy=required.strategy.value if required else None,
        attempts=outcome.attempts,
        duration_ms=round((time.monotonic() - started) * 1000, 3),
        trace_id=current_trace_id(),
        mode=mode.value,
        timestamp=now,
        enforcer_version=__version__,
    )


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


#: The most a dead-letter record carries of the original value, encoded (text or base64); a
#: record stays far below the broker's 1 MiB default however the payload escapes.
DLQ_PAYLOAD_LIMIT = 256 * 1024
#: The most it carries of the original Kafka key (S3 keys are at most 1024 bytes).
DLQ_KEY_LIMIT = 2048


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
    payload_limit: int = DLQ_PAYLOAD_LIMIT,
) -> DeadLetterRecord:
    """The dead-letter record of one Kafka record; a value or key too large to carry is cut,
    keeping the value's length and SHA-256 so the original can still be found."""
    payload, encoding, payload_cut = _carried(value, payload_limit)
    original_key, _, key_cut = _carried(key, DLQ_KEY_LIMIT, text_only=True)
    return DeadLetterRecord(
        original_payload=payload,
        payload_encoding=encoding,
        original_key=original_key,
        truncated=payload_cut or key_cut,
        original_length=len(value) if value is not None else None,
        original_sha256=hashlib.sha256(value).hexdigest() if value is not None else None,
        topic=topic,
        partition=partition,
        offset=offset,
        error_class=error_class,
        reason=reason[:2000],
        attempts=attempts,
        first_seen=first_seen,
        last_seen=last_seen,
        event_id=event_id,
        enforcer_version=__version__,
    )


def _carried(
    value: bytes | None, limit: int, text_only: bool = False
) -> tuple[str | None, str, bool]:
    """(text, encoding, cut): UTF-8 text if it is and fits as JSON, else base64 of as much as
    fits. ``text_only`` keys are decoded with replacement instead (they are for people)."""
    if value is None:
        return None, "utf-8", False
    if text_only:
        cut = len(value) > limit
        return value[:limit].decode("utf-8", "replace"), "utf-8", cut
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and len(json.dumps(text)) <= limit:
        return text, "utf-8", False
    fitting = limit // 4 * 3  # base64 makes 4 characters of every 3 bytes
    return base64.b64encode(value[:fitting]).decode(), "base64", len(value) > fitting


def without_payload(record: DeadLetterRecord) -> DeadLetterRecord:
    """The same record with the payload dropped (the broker refused even the cut one)."""
    return record.model_copy(update={"original_payload": None, "truncated": True})


class KafkaRecordSink:
    def __init__(self, producer: AIOKafkaProducer, settings: KafkaSettings) -> None:
        self._producer = producer
        self._audit_topic = settings.audit_topic
        self._dlq_topic = settings.dlq_topic

    async def publish_audit(self, record: AuditRecord) -> None:
        await self._send(self._audit_topic, record.model_dump_json().encode(), record.kafka_key)

    async def publish_dead_letter(self, record: DeadLetterRecord, key: bytes | None) -> None:
        """Publish; a record the broker still refuses for its size goes without its payload
        (its length and SHA-256 stay), so no input can stop the service here."""
        key = key[:DLQ_KEY_LIMIT] if key is not None else None
        try:
            await self._send(self._dlq_topic, record.model_dump_json().encode(), key)
        except RecordTooLarge as exc:
            log.warning("dead-letter record of %s@%s too large (%s); sent without payload",
                        record.topic, record.offset, exc)  # fmt: skip
            await self._send(
                self._dlq_topic, without_payload(record).model_dump_json().encode(), key
            )

    async def _send(self, topic: str, value: bytes, key: bytes | None) -> None:
        await kafka_call(self._producer.send_and_wait(topic, value=value, key=key),
                         f"publishing to {topic}")  # fmt: skip


@asynccontextmanager
async def open_kafka_sink(settings: KafkaSettings) -> AsyncIterator[KafkaRecordSink]:
    async with open_producer(settings, "audit") as producer:
        yield KafkaRecordSink(producer, settings)
