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

Failures are per object: a permanent error is audited as ``failed`` and the scan goes on. A
dependency outage is not audited — the object was not handled — and after ``outage_threshold``
of them in a row the scan stops and says so; a :class:`~enforcer.engine.checkpoint.DoneTracker`
knows how far it got. :meth:`Scanner.interrupt` (SIGINT/SIGTERM) stops the listing and lets the
objects already started finish, so the done prefix then covers everything started.
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
from typing import Any, Protocol

from opentelemetry import trace

from enforcer.core.events import ObjectEvent, backfill_message
from enforcer.core.policy import Mode, RequiredKey
from enforcer.core.verdict import Plan, Verdict
from enforcer.engine.checkpoint import DoneTracker, Position
from enforcer.engine.pipeline import Announce, Outcome, Pipeline
from enforcer.errors import EnforcerError, KeyDisabled, KeyMissing, TransientError
from enforcer.records import AuditRecord, RecordSink, audit_record, intent_record
from enforcer.report.lines import ENQUEUED, ScanLine
from enforcer.report.model import NONCURRENT_EVENT
from enforcer.retrying import retry_transient
from enforcer.storage.port import ListedObject, ObjectSnapshot, PreservedAttributes
from enforcer.telemetry import KEY_ALERTS, TRACER

#: How many failures the summary lists one by one (all of them are counted).
MAX_LISTED_FAILURES = 20
#: Objects judged from their listing whose audit records may be in flight at once.
LIGHT_LANE = 256


class EventPublisher(Protocol):
    async def publish_event(self, key: bytes, value: bytes) -> None: ...


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
    concurrency: int
    outage_threshold: int
    light_concurrency: int = LIGHT_LANE
    events: EventPublisher | None = None  # --enqueue
    facts_source: str = "listing"  # or "inventory": how lines name a verdict from listed facts


class Scanner:
    """Runs listed objects through the pipeline (or onto the event topic) and audits each."""

    def __init__(
        self,
        pipeline: Pipeline,
        sink: RecordSink,
        summary: ScanSummary,
        options: ScanOptions,
        *,
        tracker: DoneTracker | None = None,
        on_line: Callable[[ScanLine], None] = lambda line: None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pipeline = pipeline
        self._sink = sink
        self._summary = summary
        self._options = options
        self._mode = Mode(summary.mode)
        self._heavy = asyncio.Semaphore(options.concurrency)
        self._light = asyncio.Semaphore(options.light_concurrency)
        self._outages_in_a_row = 0
        self._stop = asyncio.Event()
        self._interrupted = False
        self._run_id = uuid.uuid4().hex
        self.tracker = tracker or DoneTracker()
        self._on_line = on_line
        self._now = now
        self._listing_span: trace.Span = trace.INVALID_SPAN

    def interrupt(self) -> None:
        """Stop listing; what was started finishes (SIGINT/SIGTERM)."""
        self._interrupted = True

    async def run(self, items: AsyncIterator[ListedObject]) -> ScanSummary:
        stopped_early, started = False, time.monotonic()
        # Objects judged from the listing have no span of their own (millions would flood the
        # exporter): their audit records carry the trace of this one span over the listing.
        self._listing_span = TRACER.start_span(
            "scan.listing", attributes={"bucket": self._summary.bucket}
        )
        try:
            async with asyncio.TaskGroup() as group:
                async for item in items:  # a listing error cancels the tasks
                    if self._stop.is_set() or self._interrupted:
                        stopped_early = True
                        break
                    await self._dispatch(group, item)
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None
        finally:
            self._listing_span.end()
        self._summary.interrupted = stopped_early and self._summary.aborted is None
        self._summary.seconds = time.monotonic() - started
        return self._summary

    async def _dispatch(self, group: asyncio.TaskGroup, item: ListedObject) -> None:
        position = self.tracker.dispatch(item.key, item.version_id)
        verdict: Verdict | None = None
        if item.facts is not None:
            outcome, started = Outcome(), time.monotonic()
            try:
                decision = await self._pipeline.judge(_snapshot(item), outcome)
            except EnforcerError:  # e.g. the bucket's rule could not be read: the HEAD path
                decision = None  # reports it properly
            if decision is not None and decision.plan is Plan.NOTHING:
                with trace.use_span(self._listing_span, end_on_exit=False):
                    record = self._audit(self._event(item), outcome, started)
                source, latest = self._options.facts_source, item.is_latest
                await self._spawn(
                    group, self._light, self._publish, position, record, source, latest
                )
                return
            verdict = decision.verdict if decision else None
        if self._options.events is not None and item.is_latest:
            await self._spawn(group, self._light, self._enqueue, position, item, verdict)
            return
        await self._spawn(group, self._heavy, self._handle, position, item)

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

    async def _handle(self, position: Position, item: ListedObject) -> None:
        if self._stop.is_set():
            return  # aborted: not done, so a resumed scan takes it again
        event = self._event(item)
        with TRACER.start_as_current_span("scan.object", attributes={"bucket": item.bucket}):
            started = time.monotonic()
            outcome = Outcome()
            try:
                if item.is_latest:
                    outcome = await self._pipeline.handle(
                        event, outcome, self._announcer(event, outcome)
                    )
                else:
                    outcome = await self._pipeline.handle_noncurrent(event, outcome)
            except TransientError as exc:
                self._outage(item.key, exc)
                return
            except EnforcerError as exc:
                record = self._failed(event, outcome, exc, started)
            else:
                record = self._audit(event, outcome, started)
            self._outages_in_a_row = 0
            await self._publish(position, record, "head", item.is_latest)

    def _announcer(self, event: ObjectEvent, outcome: Outcome) -> Announce:
        """Publishes the intent record before each rewrite, as the service does."""

        async def announce(snapshot: ObjectSnapshot, required: RequiredKey) -> None:
            record = intent_record(event, snapshot, required, outcome.verdict,
                                   default_mode=self._mode, now=self._now())  # fmt: skip
            await retry_transient(lambda: self._sink.publish_audit(record))

        return announce

    async def _publish(
        self, position: Position, record: AuditRecord, source: str, is_latest: bool
    ) -> None:
        await retry_transient(lambda: self._sink.publish_audit(record))
        self._finish(position, ScanLine.from_audit(record, source=source, is_latest=is_latest))

    async def _enqueue(
        self, position: Position, item: ListedObject, verdict: Verdict | None
    ) -> None:
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
            mode=self._mode.value,
            source=self._options.facts_source if item.facts else None,
            timestamp=self._now(),
        )
        self._finish(position, line)

    def _finish(self, position: Position, line: ScanLine) -> None:
        self._summary.count(line)
        self._on_line(line)
        self.tracker.finish(position)

    def _failed(
        self, event: ObjectEvent, outcome: Outcome, exc: EnforcerError, started: float
    ) -> AuditRecord:
        if isinstance(exc, KeyMissing | KeyDisabled):
            KEY_ALERTS.add(1, {"key": exc.key_name, "error": exc.code})
        self._summary.fail(event.key, exc)
        return self._audit(event, outcome, started, reason=f"{exc.code}: {exc}")

    def _outage(self, key: str, exc: TransientError) -> None:
        self._summary.fail(key, exc)
        self._outages_in_a_row += 1
        if self._outages_in_a_row >= self._options.outage_threshold and not self._stop.is_set():
            self._stop.set()
            self._summary.aborted = (
                f"{exc.code} on {self._outages_in_a_row} objects in a row: stopped listing; "
                "resume the scan once the dependency is back (it is idempotent)"
            )

    def _audit(
        self, event: ObjectEvent, outcome: Outcome, started: float, reason: str | None = None
    ) -> AuditRecord:
        """The audit record the service would write for this outcome."""
        return audit_record(event, outcome, default_mode=self._mode, started=started,
                            now=self._now(), failure=reason)  # fmt: skip

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
