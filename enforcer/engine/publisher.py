"""The records an object's handling leaves, built and published until Kafka acknowledges them.

One :class:`RecordPublisher` per guard turns outcomes into the contract's records (the intent
before a rewrite, the final audit record, the dead letter), counts them in the metrics, and
publishes them however long Kafka is away: retried with the policy's backoff and no limit, until
acknowledged or until the handling is cancelled (a shutdown: then nothing is committed and the
event is handled again).
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from datetime import datetime

from enforcer.core.events import IgnoredRecord, ObjectEvent
from enforcer.core.policy import Mode, RequiredKey
from enforcer.engine.objects import ObjectSnapshot
from enforcer.engine.observe import observe_handled
from enforcer.engine.outcome import Outcome
from enforcer.engine.pipeline import Announce
from enforcer.engine.ports import Message, RecordSink
from enforcer.engine.records import (
    AuditRecord,
    audit_for_ignored,
    audit_record,
    dead_letter,
    intent_record,
)
from enforcer.errors import EnforcerError
from enforcer.retrying import RetryPolicy, retry_until_stopped
from enforcer.telemetry import DLQ_RECORDS, current_trace_id, step


class RecordPublisher:
    """Intent, audit and dead-letter records of one mode, to one sink."""

    def __init__(self, sink: RecordSink, mode: Mode, now: Callable[[], datetime]) -> None:
        self._sink = sink
        self._intents = sink
        self._mode = mode
        self._now = now

    def with_sink(self, sink: RecordSink) -> RecordPublisher:
        """This publisher with its final records going to ``sink`` (a backfill range's
        transaction); intent records still go to the original sink, each acknowledged before
        its rewrite."""
        twin = copy.copy(self)
        twin._sink = sink
        return twin

    def record(
        self, event: ObjectEvent, outcome: Outcome, duration: float, failure: str | None = None
    ) -> AuditRecord:
        """The audit record of ``outcome``, counted in the metrics."""
        record = audit_record(event, outcome, default_mode=self._mode, duration=duration,
                              trace_id=current_trace_id(), now=self._now(),
                              failure=failure)  # fmt: skip
        observe_handled(event, record, own_write=outcome.own_write)
        return record

    async def send(self, record: AuditRecord) -> Awaitable[None]:
        """Hand ``record`` to the producer; the returned awaitable is its acknowledgement."""
        with step("publish"):
            return await self._sink.send_audit(record)

    async def publish(
        self, event: ObjectEvent, outcome: Outcome, duration: float, failure: str | None = None
    ) -> AuditRecord:
        """The audit record of ``outcome``, published and counted in the metrics."""
        record = self.record(event, outcome, duration, failure)
        await self.publish_audit(record)
        return record

    async def publish_audit(self, record: AuditRecord) -> None:
        with step("publish"):
            await until_published(lambda: self._sink.publish_audit(record))

    async def publish_ignored(self, item: IgnoredRecord) -> None:
        """A record of the input that names no object event we handle (a delete, a test event)."""
        record = audit_for_ignored(item, mode=self._mode.value, trace_id=current_trace_id(),
                                   now=self._now())  # fmt: skip
        await self.publish_audit(record)

    def announcer(self, event: ObjectEvent, outcome: Outcome) -> Announce:
        """What the pipeline calls before a rewrite: the intent record, acknowledged."""

        async def announce(snapshot: ObjectSnapshot, required: RequiredKey) -> None:
            record = intent_record(event, snapshot, required, outcome.verdict,
                                   default_mode=self._mode, trace_id=current_trace_id(),
                                   now=self._now())  # fmt: skip
            with step("publish"):
                await until_published(lambda: self._intents.publish_audit(record))

        return announce

    async def dead_letter(
        self,
        message: Message,
        exc: EnforcerError,
        *,
        attempts: int,
        first_seen: datetime,
        event_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Dead-letter ``message`` because of ``exc`` (a permanent failure or a bad event);
        ``reason``: what to say instead of ``exc``'s message."""
        record = dead_letter(message.value, message.key, topic=message.topic,
                             partition=message.partition, offset=message.offset,
                             error_class=exc.code, reason=reason or str(exc), attempts=attempts,
                             first_seen=first_seen, last_seen=self._now(),
                             event_id=event_id)  # fmt: skip
        with step("dead_letter"):
            await until_published(lambda: self._sink.publish_dead_letter(record, message.key))
        DLQ_RECORDS.add(1, {"error_type": exc.code})


async def until_published(publish: Callable[[], Awaitable[None]]) -> None:
    """A record is published however long Kafka is away (a broker restart can take a minute):
    retried with the policy's backoff and no limit, until it is acknowledged or the handling is
    cancelled (a shutdown; then nothing is committed and the event is handled again)."""
    await retry_until_stopped(publish, stopped=lambda: False, policy=RetryPolicy())
