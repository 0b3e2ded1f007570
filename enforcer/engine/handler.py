"""What happens to one Kafka record: parse, run each event through the pipeline, audit, DLQ.

This is the per-event guard (docs/architecture.md, failure model): permanent errors become an audit
record with the reason plus a dead-letter record, and the offset may be committed; outages (KMS,
storage) go to the outage gate and the same event is tried again once the dependency is back —
nothing reaches the DLQ because a dependency was down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from opentelemetry import trace

from enforcer.core.events import IgnoredRecord, ObjectEvent, parse_message
from enforcer.core.policy import Mode
from enforcer.core.verdict import Action
from enforcer.engine.fanout import run_per_object
from enforcer.engine.outage import OutageGate
from enforcer.engine.pipeline import Outcome, Pipeline
from enforcer.errors import (
    BadEvent,
    EnforcerError,
    KafkaUnavailable,
    KeyDisabled,
    KeyMissing,
    KmsUnavailable,
    PermanentError,
    StorageRejected,
    StorageUnavailable,
)
from enforcer.kafka.consumer import KafkaMessage
from enforcer.records import (
    AuditRecord,
    RecordSink,
    audit_for_ignored,
    audit_record,
    dead_letter,
)
from enforcer.retrying import retry_transient
from enforcer.telemetry import (
    COMPLIANCE_LATENCY,
    DLQ_RECORDS,
    EVENT_DURATION,
    EVENTS,
    KEY_ALERTS,
    KEY_AVAILABLE,
    TRACER,
    context_from_headers,
    current_trace_id,
    step,
)

log = logging.getLogger(__name__)

_OUTAGES = (KmsUnavailable, StorageUnavailable)
_POISON_ROUNDS = 5


class RecordHandler:
    def __init__(
        self,
        pipeline: Pipeline,
        sink: RecordSink,
        gate: OutageGate,
        mode: Mode,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        fanout: int = 1,
    ) -> None:
        """``fanout``: how many objects of one message are handled at once."""
        self._fanout = fanout
        self._pipeline = pipeline
        self._sink = sink
        self._gate = gate
        self._mode = mode
        self._now = now

    async def __call__(self, message: KafkaMessage) -> None:
        attributes: dict[str, str | int] = {
            "messaging.kafka.partition": message.partition,
            "messaging.kafka.offset": message.offset,
            "messaging.source": message.topic,
        }
        context = context_from_headers(message.headers)
        with TRACER.start_as_current_span("event", context=context, attributes=attributes):
            first_seen = self._now()
            try:
                with step("parse"):
                    parsed = parse_message(message.value)
            except BadEvent as exc:
                await self._dead_letter(message, exc, attempts=1, first_seen=first_seen)
                return

            async def handle(item: IgnoredRecord | ObjectEvent) -> None:
                if isinstance(item, IgnoredRecord):
                    record = audit_for_ignored(
                        item, mode=self._mode.value, trace_id=current_trace_id(), now=self._now()
                    )
                    await self._publish_audit(record)
                else:
                    await self._handle_event(message, item, first_seen)

            await run_per_object(parsed, handle, self._fanout)

    async def _handle_event(
        self, message: KafkaMessage, event: ObjectEvent, first_seen: datetime
    ) -> None:
        span = trace.get_current_span()
        span.set_attribute("bucket", event.bucket)
        rounds, others_ok_before = 0, self._gate.successes
        while True:
            await self._gate.wait_until_closed()
            started = time.monotonic()
            outcome = Outcome()
            try:
                outcome = await self._pipeline.handle(event, outcome)
            except _OUTAGES as exc:
                self._gate.record_failure(type(exc).__name__)
                rounds += 1
                if not self._is_poison(rounds, others_ok_before):
                    continue  # same event again once the dependency is back
                poison = StorageRejected(f"still failing after {rounds} rounds while other "
                                         f"objects succeed: {exc}")  # fmt: skip
                await self._fail(message, event, outcome, poison, started, first_seen)
                return
            except PermanentError as exc:
                self._gate.record_success()  # the dependency answered, it just said no
                await self._fail(message, event, outcome, exc, started, first_seen)
                return
            self._gate.record_success()
            record = audit_record(
                event, outcome, default_mode=self._mode, started=started, now=self._now()
            )
            span.set_attribute("verdict", str(record.verdict))
            span.set_attribute("action", record.action.value)
            _observe(event, record)
            await self._publish_audit(record)
            return

    def _is_poison(self, rounds: int, others_ok_before: int) -> bool:
        """One object failing "transiently" round after round while others succeed is not an
        outage: dead-letter it rather than stall its partition. During a real outage nothing
        succeeds, so nothing is dead-lettered."""
        others_ok = self._gate.successes - others_ok_before
        return rounds >= _POISON_ROUNDS and others_ok >= _POISON_ROUNDS

    async def _fail(
        self,
        message: KafkaMessage,
        event: ObjectEvent,
        outcome: Outcome,
        exc: EnforcerError,
        started: float,
        first_seen: datetime,
    ) -> None:
        if isinstance(exc, KeyMissing | KeyDisabled):
            KEY_ALERTS.add(1, {"key": exc.key_name, "error_type": exc.code})
            KEY_AVAILABLE.set(0, {"key": exc.key_name})
        log.warning("event %s for %s/%s failed: %s", event.event_id, event.bucket, event.key, exc)
        reason = f"{exc.code}: {exc}"
        record = audit_record(event, outcome, default_mode=self._mode, started=started,
                              now=self._now(), failure=reason)  # fmt: skip
        _observe(event, record)
        await self._publish_audit(record)
        await self._dead_letter(
            message, exc, attempts=outcome.attempts, first_seen=first_seen, event_id=event.event_id
        )

    async def _publish_audit(self, record: AuditRecord) -> None:
        with step("publish"):
            await retry_transient(lambda: self._sink.publish_audit(record))

    async def _dead_letter(
        self,
        message: KafkaMessage,
        exc: EnforcerError,
        *,
        attempts: int,
        first_seen: datetime,
        event_id: str | None = None,
    ) -> None:
        record = dead_letter(
            message.value,
            message.key,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            error_class=exc.code,
            reason=str(exc),
            attempts=attempts,
            first_seen=first_seen,
            last_seen=self._now(),
            event_id=event_id,
        )
        with step("dead_letter"):
            try:
                await retry_transient(lambda: self._sink.publish_dead_letter(record, message.key))
            except KafkaUnavailable:
                log.exception("could not dead-letter %s@%s", message.topic, message.offset)
                raise
        DLQ_RECORDS.add(1, {"error_type": exc.code})


def _observe(event: ObjectEvent, record: AuditRecord) -> None:
    """The metrics of one handled object event, and in audit mode its one INFO log line."""
    action = record.action
    EVENTS.add(1, {"verdict": str(record.verdict), "action": action.value, "mode": record.mode})
    EVENT_DURATION.record(record.duration_ms / 1000, {"action": action.value, "mode": record.mode})
    if action is Action.REENCRYPTED and record.required_key:
        KEY_AVAILABLE.set(1, {"key": record.required_key})
        if event.event_time is not None:  # the object's write → its new version verified
            latency = (record.timestamp - event.event_time).total_seconds()
            COMPLIANCE_LATENCY.record(max(latency, 0.0))
    if record.mode == Mode.AUDIT.value:
        log.info(
            "dry run: %s/%s is %s, action %s",
            record.bucket,
            record.key,
            record.verdict,
            action.value,
            extra={
                "bucket": record.bucket,
                "key": record.key,
                "verdict": str(record.verdict),
                "action": action.value,
            },
        )
