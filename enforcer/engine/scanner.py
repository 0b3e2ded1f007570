"""The backfill engine: every listed object classified once, the non-compliant ones enforced.

Objects come from a listing (or an inventory) in order. An object whose listing already tells
its encryption (MinIO's ``metadata=true``, an S3 Inventory row) is judged from those facts, and
when nothing is to be done it costs no request of its own: its audit record goes out on a light
lane (many at once, publishing is all it does). Everything else takes the heavy lane, at most
``concurrency`` at a time, through :meth:`~enforcer.engine.pipeline.Pipeline.handle` — which
inspects the object again with HEAD before it writes, so a listed verdict is never acted on
alone. Non-current versions (``--versions``) go through
:meth:`~enforcer.engine.pipeline.Pipeline.handle_noncurrent`. With an event publisher
(``--enqueue``) non-compliant current objects are not handled here: one backfill event each goes
to the backfill topic, and the ``enforcer run`` replicas share the rewrites.

Every handled object goes through the same per-object guard as the service
(:class:`~enforcer.engine.guard.ObjectGuard`, without dead letters: a scan has no input message
to replay): a permanent error is audited as ``failed`` and the scan goes on. A dependency outage
is not audited — the object was not handled — and is reported to the guard's outage gate; once
the gate opens the scan stops listing and says so; a
:class:`~enforcer.engine.checkpoint.DoneTracker` knows how far it got.
:meth:`Scanner.interrupt` (SIGINT/SIGTERM) stops the listing and lets the objects already
started finish, so the done prefix then covers everything started.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from enforcer.core.events import ObjectEvent, backfill_message
from enforcer.core.verdict import Plan, Verdict
from enforcer.engine.checkpoint import DoneTracker, Position
from enforcer.engine.guard import ObjectGuard
from enforcer.engine.objects import ListedObject, ObjectSnapshot, PreservedAttributes
from enforcer.engine.outcome import Outcome
from enforcer.engine.ports import BackfillCapacity, EventPublisher
from enforcer.engine.records import ENQUEUED, NONCURRENT_EVENT, ScanLine
from enforcer.errors import EnforcerError
from enforcer.retrying import retry_transient
from enforcer.telemetry import TRACER

#: An entry's tracker (its lister's) and its place in that lister's order.
Place = tuple[DoneTracker, Position]
#: How many failures the summary lists one by one (all of them are counted).
MAX_LISTED_FAILURES = 20
#: Objects judged from their listing whose audit records may be in flight at once.
LIGHT_LANE = 256


@dataclass
class ScanSummary:
    """What a scan did (over all its runs when resumed); printed as JSON on stdout."""

    bucket: str
    prefix: str
    mode: str
    audit_topic: str
    objects: int = 0
    from_listing: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    aborted: str | None = None
    interrupted: bool = False
    seconds: float = 0.0  # this run's, from the first listing request to the last object

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.aborted is None and not self.interrupted

    def count(self, line: ScanLine) -> None:
        self.objects += 1
        self.from_listing += line.source in ("listing", "inventory")
        self.verdicts[line.verdict or "unknown"] += 1
        self.actions[line.action] += 1

    def fail(self, key: str, exc: EnforcerError) -> None:
        self.failed += 1
        if len(self.failures) < MAX_LISTED_FAILURES:
            self.failures.append({"key": key, "error_class": exc.code, "reason": str(exc)})

    def as_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "mode": self.mode,
            "audit_topic": self.audit_topic,
            "objects": self.objects,
            "classified_from_listing": self.from_listing,
            "verdicts": dict(sorted(self.verdicts.items())),
            "actions": dict(sorted(self.actions.items())),
            "failed": self.failed,
            "failures": self.failures,
            "aborted": self.aborted,
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
        }


@dataclass
class ScanOptions:
    light_concurrency: int = LIGHT_LANE
    events: EventPublisher | None = None  # --enqueue
    facts_source: str = "listing"  # or "inventory": how lines name a verdict from listed facts
    #: The run the event ids derive from (a backfill's id, so whoever lists a range again
    #: names its objects' events the same); None: a fresh one.
    run_id: str | None = None
    #: Entries a lister may run ahead of the first one not finished yet (bounds the tracker).
    max_ahead: int = 100_000
    #: Backfill work waits here for a work slot live work leaves (``enforcer run``'s ranges).
    capacity: BackfillCapacity | None = None


@dataclass
class ScanSource:
    """One lister's entries (a key range, or the whole scan), with the tracker of how far
    it got."""

    items: AsyncIterator[ListedObject]
    tracker: DoneTracker = field(default_factory=DoneTracker)


class Scanner:
    """Runs listed objects through the guard (or onto the event topic) and audits each."""

    def __init__(
        self,
        guard: ObjectGuard,
        summary: ScanSummary,
        options: ScanOptions | None = None,
        *,
        tracker: DoneTracker | None = None,
        on_line: Callable[[ScanLine], None] = lambda line: None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._guard = guard
        self._summary = summary
        self._options = options or ScanOptions()
        self._heavy = asyncio.Semaphore(guard.concurrency)
        self._light = asyncio.Semaphore(self._options.light_concurrency)
        self._stop = asyncio.Event()
        self._interrupted = False
        self._run_id = self._options.run_id or uuid.uuid4().hex
        self.tracker = tracker or DoneTracker()
        self._progressed = asyncio.Event()
        self._on_line = on_line
        self._now = now
        self._listing_span: trace.Span = trace.INVALID_SPAN

    def interrupt(self) -> None:
        """Stop listing; what was started finishes (SIGINT/SIGTERM)."""
        self._interrupted = True

    async def run(self, items: AsyncIterator[ListedObject]) -> ScanSummary:
        """List ``items`` (one lister), tracked by :attr:`tracker`."""
        return await self.run_sources([ScanSource(items, self.tracker)])

    async def run_sources(self, sources: list[ScanSource]) -> ScanSummary:
        """List every source at once (one lister each, a key range each), all feeding the
        same guard and lanes; each source's tracker knows how far it got."""
        started = time.monotonic()
        # Objects judged from the listing have no span of their own (millions would flood the
        # exporter): their audit records carry the trace of this one span over the listing.
        self._listing_span = TRACER.start_span(
            "scan.listing", attributes={"bucket": self._summary.bucket}
        )
        try:
            async with asyncio.TaskGroup() as group:
                listers = [group.create_task(self._list(group, s)) for s in sources]
                await asyncio.wait(listers)
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None
        finally:
            self._listing_span.end()
        stopped_early = any(task.result() for task in listers)
        self._summary.interrupted = stopped_early and self._summary.aborted is None
        self._summary.seconds = time.monotonic() - started
        return self._summary

    async def _list(self, group: asyncio.TaskGroup, source: ScanSource) -> bool:
        """Dispatch one source's entries; True when it stopped before its end."""
        async for item in source.items:  # a listing error cancels the tasks
            while source.tracker.in_flight >= self._options.max_ahead:
                self._progressed.clear()
                await self._progressed.wait()
            if self._options.capacity is not None:
                await self._options.capacity.admit()
            if self._stop.is_set() or self._interrupted:
                return True
            await self._dispatch(group, item, source.tracker)
        return False

    async def _dispatch(
        self, group: asyncio.TaskGroup, item: ListedObject, tracker: DoneTracker
    ) -> None:
        place = tracker, tracker.dispatch(item.key, item.version_id)
        verdict: Verdict | None = None
        if item.facts is not None:
            outcome, started = Outcome(), time.monotonic()
            try:
                decision = await self._guard.pipeline.judge(_snapshot(item), outcome)
            except EnforcerError:  # e.g. the bucket's rule could not be read: the HEAD path
                decision = None  # reports it properly
            if decision is not None and decision.plan is Plan.NOTHING:
                source = self._options.facts_source
                await self._spawn(group, self._light, self._judged, place, item, outcome,
                                  time.monotonic() - started, source)  # fmt: skip
                return
            verdict = decision.verdict if decision else None
        if self._options.events is not None and item.is_latest:
            await self._spawn(group, self._light, self._enqueue, place, item, verdict)
            return
        await self._spawn(group, self._heavy, self._handle, place, item)

    async def _spawn(
        self,
        group: asyncio.TaskGroup,
        lane: asyncio.Semaphore,
        work: Callable[..., Coroutine[Any, Any, None]],
        *args: Any,
    ) -> None:
        """Start ``work(*args)`` once ``lane`` has room (bounded tasks, flat memory)."""
        await lane.acquire()
        task = group.create_task(work(*args))
        task.add_done_callback(lambda _: lane.release())

    async def _judged(
        self, place: Place, item: ListedObject, outcome: Outcome, took: float, source: str
    ) -> None:
        """An object its listing showed compliant: its audit record, in the listing's trace."""
        with trace.use_span(self._listing_span, end_on_exit=False):
            record = await self._guard.records.publish(self._event(item), outcome, took)
        self._finish(place, ScanLine.from_audit(record, source=source, is_latest=item.is_latest))

    async def _handle(self, place: Place, item: ListedObject) -> None:
        if self._stop.is_set():
            return  # aborted: not done, so a resumed scan takes it again
        with TRACER.start_as_current_span("scan.object", attributes={"bucket": item.bucket}):
            handled = await self._guard.handle(self._event(item), noncurrent=not item.is_latest)
        if handled.error is not None:
            self._summary.fail(item.key, handled.error)
        if handled.record is None:  # an outage: not done, so a resumed scan takes it again
            self._stop_if_paused(handled.error)
            return
        line = ScanLine.from_audit(handled.record, source="head", is_latest=item.is_latest)
        self._finish(place, line)

    def _stop_if_paused(self, error: EnforcerError | None) -> None:
        """Once the guard's outage gate opens, stop listing: the scan cannot wait as the
        service does, and a resumed scan continues where it stopped."""
        if not self._guard.gate.is_open or self._stop.is_set():
            return
        self._stop.set()
        code = error.code if error is not None else "outage"
        self._summary.aborted = (
            f"{code}: {self._guard.gate.describe()}; stopped listing: resume the scan once "
            "the dependency is back (it is idempotent)"
        )

    async def _enqueue(self, place: Place, item: ListedObject, verdict: Verdict | None) -> None:
        key, value = backfill_message(item.bucket, item.key, etag=item.etag, size=item.size,
                                      run_id=self._run_id, when=self._now())  # fmt: skip
        events = self._options.events
        assert events is not None
        await retry_transient(lambda: events.publish_event(key, value))
        line = ScanLine(
            bucket=item.bucket,
            key=item.key,
            version_id=item.version_id,
            observed_sse=item.facts.encryption.value if item.facts else None,
            observed_kms_key=item.facts.kms_key if item.facts else None,
            verdict=verdict.value if verdict else None,
            action=ENQUEUED,
            mode=self._summary.mode,
            source=self._options.facts_source if item.facts else None,
            timestamp=self._now(),
        )
        self._finish(place, line)

    def _finish(self, place: Place, line: ScanLine) -> None:
        self._summary.count(line)
        self._on_line(line)
        tracker, position = place
        tracker.finish(position)
        self._progressed.set()

    def _event(self, item: ListedObject) -> ObjectEvent:
        """Unique per scan run and object version, stable within the run."""
        material = "\x00".join(("scan", self._run_id, item.bucket, item.key, item.version_id or ""))
        return ObjectEvent(
            event_id=hashlib.sha256(material.encode()).hexdigest()[:32],
            event_name="scan" if item.is_latest else NONCURRENT_EVENT,
            bucket=item.bucket,
            key=item.key,
            version_id=None if item.is_latest else item.version_id,
            size=item.size,
            etag=item.etag,
            source_format="s3",
        )


def _snapshot(item: ListedObject) -> ObjectSnapshot:
    """What the listing said, in the shape a HEAD would have given."""
    assert item.facts is not None
    return ObjectSnapshot(
        bucket=item.bucket,
        key=item.key,
        etag=item.etag,
        size=item.size,
        encryption=item.facts.encryption,
        kms_key=item.facts.kms_key,
        version_id=item.version_id,
        attributes=PreservedAttributes(metadata=item.facts.metadata),
    )


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a task or the lister raised (EnforcerError first), out of its task group."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        error = stack.pop()
        if isinstance(error, BaseExceptionGroup):
            stack.extend(error.exceptions)
        else:
            leaves.append(error)
    enforcer_errors = [e for e in leaves if isinstance(e, EnforcerError)]
    return (enforcer_errors or leaves)[0]
