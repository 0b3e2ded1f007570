"""The per-object guard: one object event through the pipeline, and what follows from how it ended.

``enforcer run`` (through :class:`~enforcer.engine.handler.RecordHandler`) and ``enforcer scan``
(through :class:`~enforcer.engine.scanner.Scanner`) hand every object to the same
:class:`ObjectGuard`, so an outcome means the same records and metrics wherever it came from:

* a result: its audit record (and, before every rewrite, the acknowledged intent record);
* a permanent failure: an audit record with the reason, the key alert and key gauge when the
  failure shows a key unusable, and — for an event read from Kafka — a dead-letter record;
* an outage (KMS, storage, refused credentials): no record at all. It is reported to the
  outage gate, which decides whether consumption pauses. The service waits at the gate and
  tries the same event again; a scan (``waits_out_outages=False``) leaves the object
  unhandled and stops once the gate opens. Only an event that keeps failing while the same
  dependency serves other events is dead-lettered (``poison_event``): the gate's rule.

An event waiting at the gate holds no work slot: the ``concurrency`` slots are taken per attempt,
after the gate admits it, so events that fail for reasons of their own (a key the KMS refuses)
cannot crowd out the one that would show the dependency working.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from opentelemetry import trace

from enforcer.core.events import IgnoredRecord, ObjectEvent
from enforcer.core.policy import Mode, RequiredKey
from enforcer.core.verdict import Action, Verdict
from enforcer.engine.objects import ObjectSnapshot
from enforcer.engine.outage import Mark, OutageGate
from enforcer.engine.outcome import Outcome
from enforcer.engine.pipeline import Announce, Pipeline
from enforcer.engine.ports import Message, RecordSink
from enforcer.engine.records import (
    AuditRecord,
    audit_for_ignored,
    audit_record,
    dead_letter,
    intent_record,
)
from enforcer.errors import (
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
from enforcer.retrying import retry_transient
from enforcer.telemetry import (
    COMPLIANCE_LATENCY,
    DLQ_RECORDS,
    EVENT_DURATION,
    EVENTS,
    KEY_ALERTS,
    KEY_AVAILABLE,
    OBJECTS,
    current_trace_id,
    step,
)

log = logging.getLogger(__name__)

_OUTAGES = (KmsUnavailable, StorageUnavailable, CredentialsRejected)


@dataclass(frozen=True)
class Handled:
    """How the guard left one event."""

    #: Its final audit record, published; None when it was not handled (an outage, in a scan).
    record: AuditRecord | None = None
    #: Why it failed (the record says ``failed``), or the outage that left it unhandled.
    error: EnforcerError | None = None


class ObjectGuard:
    def __init__(
        self,
        pipeline: Pipeline,
        sink: RecordSink,
        gate: OutageGate,
        mode: Mode,
        *,
        concurrency: int = 1,
        waits_out_outages: bool = True,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``concurrency``: objects worked on at once. ``waits_out_outages``: the service waits
        at the gate and tries again; a scan reports the object unhandled instead."""
        self.gate = gate
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self.pipeline = pipeline
        self._sink = sink
        self._intents = sink
        self._mode = mode
        self._waits = waits_out_outages
        self.now = now
        self._clock = clock

    @property
    def mode(self) -> Mode:
        return self._mode

    def with_records(self, sink: RecordSink) -> ObjectGuard:
        """This guard — same pipeline, outage gate and work slots — with its final records
        going to ``sink`` (a backfill range's transaction). Intent records still go to this
        guard's own sink, each acknowledged before its rewrite."""
        twin = copy.copy(self)
        twin._sink = sink
        return twin

    async def handle(
        self, event: ObjectEvent, *, message: Message | None = None, noncurrent: bool = False
    ) -> Handled:
        """Handle ``event`` (a non-current version with ``noncurrent``) until it has a final
        record — or, in a scan, until an outage leaves it unhandled. ``message``: the Kafka
        record it came from, dead-lettered with a permanent failure."""
        mark, first_seen, rounds = self.gate.mark(), self.now(), 0
        while True:
            if not self._waits and self.gate.is_open:
                return Handled()  # a scan does not queue behind an outage: not handled
            async with self.gate.admitted():
                async with self._slots:
                    handled = await self._attempt(event, message, noncurrent, mark, first_seen)
                if not isinstance(handled, EnforcerError):
                    return handled
                dependency = await self.gate.report_outage(handled)
            if not self._waits:
                return Handled(error=handled)
            rounds += 1
            if self.gate.is_poison(mark, dependency, rounds):
                poison = PoisonEvent(f"still failing after {rounds} rounds while "
                                     f"{self.gate.served_since(mark, dependency)} other events "
                                     f"used {dependency.value}: {handled}")  # fmt: skip
                return await self._fail(event, message, Outcome(), poison, self._clock(),
                                        first_seen)  # fmt: skip

    async def _attempt(
        self,
        event: ObjectEvent,
        message: Message | None,
        noncurrent: bool,
        mark: Mark,
        first_seen: datetime,
    ) -> Handled | EnforcerError:
        """One round: the final record (of a result or of a permanent failure), or the
        outage-class error that keeps the event waiting for its dependency."""
        started, outcome = self._clock(), Outcome()
        try:
            if noncurrent:
                outcome = await self.pipeline.handle_noncurrent(event, outcome)
            else:
                outcome = await self.pipeline.handle(
                    event, outcome, self._announcer(event, outcome)
                )
        except _OUTAGES as exc:
            return exc
        except PermanentError as exc:
            if (outage := await self.gate.outage_behind(exc, mark)) is not None:
                return outage
            self.gate.record_success(outcome.used)  # the dependency answered; it said no
            return await self._fail(event, message, outcome, exc, started, first_seen)
        self.gate.record_success(outcome.used)
        record = await self.publish(event, outcome, self._clock() - started)
        span = trace.get_current_span()
        span.set_attribute("verdict", str(record.verdict))
        span.set_attribute("action", record.action.value)
        return Handled(record)

    async def publish(
        self, event: ObjectEvent, outcome: Outcome, duration: float, failure: str | None = None
    ) -> AuditRecord:
        """The audit record of ``outcome``, published and counted in the metrics."""
        record = audit_record(event, outcome, default_mode=self._mode, duration=duration,
                              trace_id=current_trace_id(), now=self.now(),
                              failure=failure)  # fmt: skip
        _observe(event, record, own_write=outcome.own_write)
        await self._publish_audit(record)
        return record

    async def publish_ignored(self, item: IgnoredRecord) -> None:
        """A record of the input that names no object event we handle (a delete, a test event)."""
        record = audit_for_ignored(item, mode=self._mode.value, trace_id=current_trace_id(),
                                   now=self.now())  # fmt: skip
        await self._publish_audit(record)

    def _announcer(self, event: ObjectEvent, outcome: Outcome) -> Announce:
        async def announce(snapshot: ObjectSnapshot, required: RequiredKey) -> None:
            record = intent_record(event, snapshot, required, outcome.verdict,
                                   default_mode=self._mode, trace_id=current_trace_id(),
                                   now=self.now())  # fmt: skip
            with step("publish"):
                await retry_transient(lambda: self._intents.publish_audit(record))

        return announce

    async def _fail(
        self,
        event: ObjectEvent,
        message: Message | None,
        outcome: Outcome,
        exc: EnforcerError,
        started: float,
        first_seen: datetime,
    ) -> Handled:
        if (unusable := _unusable_key(exc, outcome)) is not None:
            key, error_type = unusable
            KEY_ALERTS.add(1, {"key": key, "error_type": error_type})
            KEY_AVAILABLE.set(0, {"key": key})
        log.warning("event %s for %s/%s failed: %s", event.event_id, event.bucket, event.key, exc)
        record = await self.publish(event, outcome, self._clock() - started,
                                    failure=f"{exc.code}: {exc}")  # fmt: skip
        if message is not None:
            await self.dead_letter(message, exc, attempts=outcome.attempts,
                                   first_seen=first_seen, event_id=event.event_id)  # fmt: skip
        return Handled(record, exc)

    async def _publish_audit(self, record: AuditRecord) -> None:
        with step("publish"):
            await retry_transient(lambda: self._sink.publish_audit(record))

    async def dead_letter(
        self,
        message: Message,
        exc: EnforcerError,
        *,
        attempts: int,
        first_seen: datetime,
        event_id: str | None = None,
    ) -> None:
        """Dead-letter ``message`` because of ``exc`` (a permanent failure or a bad event)."""
        record = dead_letter(message.value, message.key, topic=message.topic,
                             partition=message.partition, offset=message.offset,
                             error_class=exc.code, reason=str(exc), attempts=attempts,
                             first_seen=first_seen, last_seen=self.now(),
                             event_id=event_id)  # fmt: skip
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


def _observe(event: ObjectEvent, record: AuditRecord, *, own_write: bool) -> None:
    """The metrics of one handled object event, and in audit mode its one INFO log line. The
    notification of the enforcer's own rewrite is not counted again per bucket: it was
    counted as ``fixed``."""
    action = record.action
    EVENTS.add(1, {"verdict": str(record.verdict), "action": action.value, "mode": record.mode})
    if not own_write and (result := _compliance(record)) is not None:
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
