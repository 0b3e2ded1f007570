"""The per-object guard: one object event through the pipeline, and what follows from how it ended.

``enforcer run`` (through :class:`~enforcer.engine.handler.RecordHandler`) and ``enforcer scan``
(through :class:`~enforcer.engine.scanner.Scanner`) hand every object to the same
:class:`ObjectGuard`, so an outcome means the same records and metrics wherever it came from:

* a result: its audit record (and, before every rewrite, the acknowledged intent record);
* a permanent failure: an audit record with the reason and — for an event read from Kafka — a
  dead-letter record;
* a key that is unusable (missing, disabled, or refused to the storage by the KMS): the key
  alert and key gauge; the service parks the event (:mod:`enforcer.engine.parking`: it holds
  no work slot and leaves the consumer's window), retries the key with backoff, and
  dead-letters the event only after its patience, when the evidence says the refusal is the
  key's own (the gate's :meth:`~enforcer.engine.outage.OutageGate.blame`); a scan fails it;
* an outage (KMS, storage, refused credentials): no record at all. It is reported to the
  outage gate, which decides whether consumption pauses. The service waits at the gate and
  tries the same event again; a scan (``waits_out_outages=False``) leaves the object
  unhandled and stops once the gate opens. Only an event that keeps failing while the same
  dependency serves other events is dead-lettered (``poison_event``): the gate's rule.

An event waiting at the gate holds no work slot: the ``concurrency`` slots are taken per attempt,
after the gate admits it, so events that fail for reasons of their own (a key the KMS refuses)
cannot crowd out the one that would show the dependency working.

Kafka round trips: the intent record is sent and acknowledged before its rewrite starts, as
always. An event's final record is handed to the producer without waiting, and its
acknowledgement is awaited after the work slot is given back, so the slot goes to the next
object while the broker acknowledges and the records of many objects travel in one produce
request. :meth:`ObjectGuard.handle` still returns only once the final record is acknowledged
(so the consumer commits an offset only after its final record is durable); one whose send
fails is published again. The records themselves are built and published, however long Kafka
is away, by the guard's :class:`~enforcer.engine.publisher.RecordPublisher`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from opentelemetry import trace

from enforcer.core.events import ObjectEvent
from enforcer.core.policy import Mode
from enforcer.engine.outage import Blame, Mark, OutageGate
from enforcer.engine.outcome import Dependency, Outcome
from enforcer.engine.parking import KeyParking, Turn, unusable_key
from enforcer.engine.pipeline import Pipeline
from enforcer.engine.ports import Message, RecordSink
from enforcer.engine.publisher import RecordPublisher
from enforcer.engine.records import AuditRecord
from enforcer.errors import (
    CredentialsRejected,
    EnforcerError,
    KafkaUnavailable,
    KmsUnavailable,
    PermanentError,
    PoisonEvent,
    StorageUnavailable,
)
from enforcer.telemetry import KEY_ALERTS, KEY_AVAILABLE

log = logging.getLogger(__name__)

_OUTAGES = (KmsUnavailable, StorageUnavailable, CredentialsRejected)


@dataclass(frozen=True)
class Handled:
    """How the guard left one event."""

    #: Its final audit record, published; None when it was not handled (an outage, in a scan).
    record: AuditRecord | None = None
    #: Why it failed (the record says ``failed``), or the outage that left it unhandled.
    error: EnforcerError | None = None
    #: The broker's acknowledgement of ``record``, while it is still awaited (inside the guard).
    pending: Awaitable[None] | None = field(default=None, compare=False, repr=False)


@dataclass
class _Tries:
    """One event's handling so far: where the gate's counts stood when it started, its rounds
    through outages, and its parking if its key turned out unusable."""

    mark: Mark
    first_seen: datetime
    rounds: int = 0
    parked_key: str | None = None
    parked_at: float = 0.0
    counted: bool = False  #: parked, and out of the consumer's window
    expired: bool = False  #: parked for the whole patience


@dataclass(frozen=True)
class KeyRefusal:
    """A round that failed because of the event's key (missing, disabled or refused)."""

    key: str
    error: PermanentError
    outcome: Outcome
    started: float
    proven: bool  #: the key's own, by the gate's evidence (else: maybe the storage's identity)


@dataclass(frozen=True)
class _Outage:
    error: EnforcerError
    dependency: Dependency


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
        parking: KeyParking | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``concurrency``: objects worked on at once. ``waits_out_outages``: the service waits
        at the gate and tries again; a scan reports the object unhandled instead. ``parking``:
        where the service parks the events of an unusable key (a scan fails them at once)."""
        self.gate = gate
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self.pipeline = pipeline
        #: Where this guard's intent, audit and dead-letter records go.
        self.records = RecordPublisher(sink, mode, now)
        self._mode = mode
        self._waits = waits_out_outages
        self.parking = parking if waits_out_outages else None
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
        twin.records = self.records.with_sink(sink)
        return twin

    async def handle(
        self,
        event: ObjectEvent,
        *,
        message: Message | None = None,
        noncurrent: bool = False,
        on_park: Callable[[], None] | None = None,
    ) -> Handled:
        """Handle ``event`` (a non-current version with ``noncurrent``) until it has a final
        record — or, in a scan, until an outage leaves it unhandled. ``message``: the Kafka
        record it came from, dead-lettered with a permanent failure. ``on_park``: called once
        if the event is parked (its key unusable), so that the consumer stops counting it."""
        tries = _Tries(self.gate.mark(), self.now())
        try:
            while True:
                if not self._waits and self.gate.is_open:
                    return Handled()  # a scan does not queue behind an outage: not handled
                result = await self._round(event, message, noncurrent, tries)
                if isinstance(result, KeyRefusal):  # its key's scout turn ends in there
                    done = await self._park(event, message, result, tries, on_park)
                elif isinstance(result, Handled):
                    return await self._acknowledged(result)  # outside the work slot
                else:
                    self._end_turn(tries)
                    done = await self._outage(event, message, result, tries)
                if done is not None:
                    return done
        finally:
            self._end_turn(tries)
            if tries.counted and tries.parked_key is not None:
                assert self.parking is not None
                self.parking.unpark(tries.parked_key)
                tries.counted = False

    async def _round(
        self, event: ObjectEvent, message: Message | None, noncurrent: bool, tries: _Tries
    ) -> Handled | KeyRefusal | _Outage:
        """One attempt, once the gate admits it, in a work slot; an outage is reported."""
        async with self.gate.admitted():
            async with self._slots:
                result = await self._attempt(event, message, noncurrent, tries)
            if isinstance(result, EnforcerError):
                return _Outage(result, await self.gate.report_outage(result))
            return result

    async def _outage(
        self, event: ObjectEvent, message: Message | None, outage: _Outage, tries: _Tries
    ) -> Handled | None:
        """After a round failed with an outage: a scan leaves the event unhandled, the service
        tries again (None) — unless the gate's poison rule says it is no outage at all."""
        if not self._waits:
            return Handled(error=outage.error)
        tries.rounds += 1
        dependency = outage.dependency
        if not self.gate.is_poison(tries.mark, dependency, tries.rounds):
            return None
        poison = PoisonEvent(f"still failing after {tries.rounds} rounds while "
                             f"{self.gate.served_since(tries.mark, dependency)} other events "
                             f"used {dependency.value}: {outage.error}")  # fmt: skip
        return await self._fail(event, message, Outcome(), poison, self._clock(),
                                tries.first_seen)  # fmt: skip

    async def _park(
        self,
        event: ObjectEvent,
        message: Message | None,
        refusal: KeyRefusal,
        tries: _Tries,
        on_park: Callable[[], None] | None,
    ) -> Handled | None:
        """Wait, parked, until the event's key may be tried again (None). When its patience
        ends: dead-lettered if the refusal is proven the key's own, else handed to the gate as
        the KMS refusing the storage (None: it waits there) — never dead-lettered on a guess."""
        parking = self.parking
        assert parking is not None
        if tries.parked_key is None:
            tries.parked_key, tries.parked_at = refusal.key, self._clock()
            tries.counted = parking.park(refusal.key)
            if tries.counted and on_park is not None:
                on_park()
        why = f"{refusal.error.code}: {refusal.error}"
        parking.refused(refusal.key, tries, proven=refusal.proven, why=why)
        turn = await parking.wait_turn(refusal.key, tries.parked_at + parking.patience, tries)
        if turn is not Turn.EXPIRED:
            return None
        tries.expired = True
        if self.gate.is_open:
            return None  # the key could not be tried meanwhile: one round after the outage
        if refusal.proven or self.gate.served_since(tries.mark, Dependency.KMS) > 0:
            return await self._fail(event, message, refusal.outcome, refusal.error,
                                    refusal.started, tries.first_seen,
                                    note=self._parked_note(tries))  # fmt: skip
        waited = self._clock() - tries.parked_at
        self.gate.record_failure(Dependency.KMS, refusal.error, confirmed=True,
                                 detail=f"key {refusal.key} refused for {waited:.0f}s and no "
                                 "other key used since")  # fmt: skip
        return None

    def _parked_note(self, tries: _Tries) -> str | None:
        """What a dead letter of a parked event adds to its reason."""
        if tries.parked_key is None:
            return None
        waited = self._clock() - tries.parked_at
        return f"parked {waited:.0f}s: the key did not work again within the patience"

    def _end_turn(self, tries: _Tries) -> None:
        """The event's round is over: if it was its key's scout, the next may take the turn."""
        if tries.parked_key is not None and self.parking is not None:
            self.parking.release(tries.parked_key, tries)

    async def _attempt(
        self, event: ObjectEvent, message: Message | None, noncurrent: bool, tries: _Tries
    ) -> Handled | KeyRefusal | EnforcerError:
        """One round: the final record (of a result or of a permanent failure), the refusal
        that parks the event for its key, or the outage-class error that keeps the event
        waiting for its dependency."""
        started, outcome = self._clock(), Outcome()
        try:
            if noncurrent:
                outcome = await self.pipeline.handle_noncurrent(event, outcome)
            else:
                outcome = await self.pipeline.handle(
                    event, outcome, self.records.announcer(event, outcome)
                )
        except _OUTAGES as exc:
            return exc
        except PermanentError as exc:
            return await self._refusal(event, message, exc, outcome, started, tries)
        self.gate.record_success(outcome.used)
        if self.parking is not None and Dependency.KMS in outcome.used and outcome.required:
            self.parking.usable(outcome.required.key)
        record = self.records.record(event, outcome, self._clock() - started)
        pending = await self.records.send(record)
        span = trace.get_current_span()
        span.set_attribute("verdict", str(record.verdict))
        span.set_attribute("action", record.action.value)
        return Handled(record, pending=pending)

    async def _acknowledged(self, handled: Handled) -> Handled:
        """``handled`` once its final record is acknowledged; a record whose send failed is
        published again."""
        if handled.pending is None:
            return handled
        try:
            await handled.pending
        except KafkaUnavailable as exc:
            assert handled.record is not None
            log.warning("audit record of %s not acknowledged (%s); publishing it again",
                        handled.record.event_id, exc)  # fmt: skip
            await self.records.publish_audit(handled.record)
        return replace(handled, pending=None)

    async def _refusal(
        self,
        event: ObjectEvent,
        message: Message | None,
        exc: PermanentError,
        outcome: Outcome,
        started: float,
        tries: _Tries,
    ) -> Handled | KeyRefusal | EnforcerError:
        """A permanent failure: the outage behind it, the event's own (its final record), or
        its key's — parked by the service (the key alert on the event's first refusal); in a
        scan, or once the patience is over, failed when proven, else waited out as an outage."""
        unusable = unusable_key(exc, outcome)
        blame = await self.gate.blame(exc, tries.mark, unusable[0] if unusable else None)
        if isinstance(blame, EnforcerError):
            return blame
        self.gate.record_success(outcome.used)  # the dependency answered; it said no
        if blame is Blame.EVENT or unusable is None:
            return await self._fail(event, message, outcome, exc, started, tries.first_seen)
        key, error_type = unusable
        if tries.parked_key is None:
            KEY_ALERTS.add(1, {"key": key, "error_type": error_type})
            KEY_AVAILABLE.set(0, {"key": key})
        proven = blame is Blame.KEY
        if self.parking is not None and not tries.expired:
            return KeyRefusal(key, exc, outcome, started, proven)
        if proven:
            return await self._fail(event, message, outcome, exc, started, tries.first_seen,
                                    note=self._parked_note(tries))  # fmt: skip
        return exc  # not known to be the key's: waited out as the KMS refusing us

    async def _fail(
        self,
        event: ObjectEvent,
        message: Message | None,
        outcome: Outcome,
        exc: EnforcerError,
        started: float,
        first_seen: datetime,
        note: str | None = None,
    ) -> Handled:
        """The final record of a permanent failure (``note``: added to its reason), and the
        dead letter of the Kafka record it came from."""
        reason = f"{exc}; {note}" if note else str(exc)
        log.warning("event %s for %s/%s failed: %s", event.event_id, event.bucket, event.key,
                    reason)  # fmt: skip
        record = await self.records.publish(event, outcome, self._clock() - started,
                                            failure=f"{exc.code}: {reason}")  # fmt: skip
        if message is not None:
            await self.records.dead_letter(message, exc, attempts=outcome.attempts,
                                           first_seen=first_seen, event_id=event.event_id,
                                           reason=reason)  # fmt: skip
        return Handled(record, exc)
