"""What happens to one Kafka record: parse, run each event through the pipeline, audit, DLQ.

This is the per-event guard (docs/architecture.md, failure model): permanent errors become an audit
record with the reason plus a dead-letter record, and the offset may be committed; outages (KMS,
storage, refused credentials) go to the outage gate and the same event is tried again once the
dependency is back — nothing reaches the DLQ because a dependency was down. Only an event that
keeps failing while the same dependency serves other events is dead-lettered (``poison_event``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from opentelemetry import trace

from enforcer.core.events import IgnoredRecord, ObjectEvent, parse_message
from enforcer.core.policy import Mode, RequiredKey
from enforcer.core.verdict import Action, Verdict
from enforcer.engine.fanout import run_per_object
from enforcer.engine.outage import Dependency, OutageGate, dependency_of
from enforcer.engine.pipeline import Announce, Outcome, Pipeline
from enforcer.errors import (
    AccessDenied,
    BadEvent,
    CredentialsRejected,
    EnforcerError,
    KafkaUnavailable,
    KeyDisabled,
    KeyMissing,
    KmsNotAuthorized,
    KmsUnavailable,
    PermanentError,
    PoisonEvent,
    StorageUnavailable,
)
from enforcer.kafka.consumer import KafkaMessage
from enforcer.records import (
    AuditRecord,
    RecordSink,
    audit_for_ignored,
    audit_record,
    dead_letter,
    intent_record,
)
from enforcer.retrying import retry_transient
from enforcer.storage.port import ObjectSnapshot
from enforcer.telemetry import (
    COMPLIANCE_LATENCY,
    DLQ_RECORDS,
    EVENT_DURATION,
    EVENTS,
    KEY_ALERTS,
    KEY_AVAILABLE,
    OBJECTS,
    TRACER,
    context_from_headers,
    current_trace_id,
    step,
)

log = logging.getLogger(__name__)

_OUTAGES = (KmsUnavailable, StorageUnavailable, CredentialsRejected)
#: An event failing with an outage-class error this many rounds while its dependency served
#: this many other events is not in an outage: it is dead-lettered as ``poison_event``.
_POISON_ROUNDS = 5
_POISON_OTHERS = 5


class RecordHandler:
    def __init__(
        self,
        pipeline: Pipeline,
        sink: RecordSink,
        gate: OutageGate,
        mode: Mode,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        concurrency: int = 1,
    ) -> None:
        """``concurrency``: how many objects are worked on at once, across messages and within
        one. An event waiting at the outage gate holds no slot: while consumption is paused,
        every event in flight can have its turn as the trial, so the events of one refused key
        cannot hold every slot while an event that would show the KMS working waits behind them."""
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
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

            await run_per_object(parsed, handle, self._concurrency)

    async def _handle_event(
        self, message: KafkaMessage, event: ObjectEvent, first_seen: datetime
    ) -> None:
        trace.get_current_span().set_attribute("bucket", event.bucket)
        rounds, others_before = 0, Counter(self._gate.successes)
        while True:
            async with self._gate.admitted():
                async with self._slots:
                    outage = await self._attempt(message, event, first_seen, others_before)
                if outage is None:
                    return
                dependency = dependency_of(outage)
                assert dependency is not None
                confirmed = not self._gate.is_open and (
                    await self._gate.diagnose(dependency) is not None
                )
                self._gate.record_failure(dependency, outage, confirmed=confirmed)
            rounds += 1
            others_ok = self._gate.successes[dependency] - others_before[dependency]
            if rounds >= _POISON_ROUNDS and others_ok >= _POISON_OTHERS:
                poison = PoisonEvent(f"still failing after {rounds} rounds while {others_ok} "
                                     f"other events used {dependency.value}: {outage}")  # fmt: skip
                await self._fail(message, event, Outcome(), poison, time.monotonic(), first_seen)
                return

    async def _attempt(
        self,
        message: KafkaMessage,
        event: ObjectEvent,
        first_seen: datetime,
        others_before: Counter[Dependency],
    ) -> EnforcerError | None:
        """One round: audit the result (or the permanent failure) and return None, or return
        the outage-class error that keeps the event waiting for its dependency."""
        started, outcome = time.monotonic(), Outcome()
        try:
            outcome = await self._pipeline.handle(event, outcome, self._announcer(event, outcome))
        except _OUTAGES as exc:
            return exc
        except PermanentError as exc:
            if (outage := await self._outage_behind(exc, others_before)) is not None:
                return outage
            self._gate.record_success(outcome.used)  # the dependency answered; it said no
            await self._fail(message, event, outcome, exc, started, first_seen)
            return None
        self._gate.record_success(outcome.used)
        record = audit_record(
            event, outcome, default_mode=self._mode, started=started, now=self._now()
        )
        span = trace.get_current_span()
        span.set_attribute("verdict", str(record.verdict))
        span.set_attribute("action", record.action.value)
        _observe(event, record)
        await self._publish_audit(record)
        return None

    async def _outage_behind(
        self, exc: PermanentError, others_before: Counter[Dependency]
    ) -> EnforcerError | None:
        """Is a refusal about this object, or about us? S3's AccessDenied: ask the storage probe
        (a signed request that must work for a valid identity). The KMS refusing a key: about
        the key if the KMS served any other event since, else about our access to the KMS."""
        if isinstance(exc, KmsNotAuthorized):
            served = self._gate.successes[Dependency.KMS] > others_before[Dependency.KMS]
            return None if served else exc
        if isinstance(exc, AccessDenied):
            return await self._gate.diagnose(Dependency.STORAGE)
        return None

    def _announcer(self, event: ObjectEvent, outcome: Outcome) -> Announce:
        async def announce(snapshot: ObjectSnapshot, required: RequiredKey) -> None:
            record = intent_record(event, snapshot, required, outcome.verdict,
                                   default_mode=self._mode, now=self._now())  # fmt: skip
            await self._publish_audit(record)

        return announce

    async def _fail(
        self,
        message: KafkaMessage,
        event: ObjectEvent,
        outcome: Outcome,
        exc: EnforcerError,
        started: float,
        first_seen: datetime,
    ) -> None:
        if (unusable := _unusable_key(exc, outcome)) is not None:
            key, error_type = unusable
            KEY_ALERTS.add(1, {"key": key, "error_type": error_type})
            KEY_AVAILABLE.set(0, {"key": key})
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


def _unusable_key(exc: EnforcerError, outcome: Outcome) -> tuple[str, str] | None:
    """The EK a failure shows unusable, and why: missing, disabled, or refused (to MinIO, or
    to us)."""
    if isinstance(exc, KeyMissing | KeyDisabled):
        return exc.key_name, exc.code
    if isinstance(exc, KmsNotAuthorized) and outcome.required is not None:
        return outcome.required.key, "not_authorized"
    return None


def _observe(event: ObjectEvent, record: AuditRecord) -> None:
    """The metrics of one handled object event, and in audit mode its one INFO log line."""
    action = record.action
    EVENTS.add(1, {"verdict": str(record.verdict), "action": action.value, "mode": record.mode})
    if (result := _compliance(record)) is not None:
        OBJECTS.add(1, {"bucket": record.bucket, "result": result})
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


_NONCOMPLIANT = frozenset({Verdict.PLAINTEXT, Verdict.SSE_S3, Verdict.WRONG_KEY, Verdict.SSE_C})


def _compliance(record: AuditRecord) -> str | None:
    """``enforcer_objects_total``'s result for one audited event; None (not counted) for an
    object that is gone or that no rule covers."""
    if record.action is Action.FAILED:
        return "failed"
    if record.action in (Action.REENCRYPTED, Action.PURGED):
        return "fixed"
    if record.verdict is Verdict.COMPLIANT:
        return "compliant"
    return "noncompliant" if record.verdict in _NONCOMPLIANT else None
