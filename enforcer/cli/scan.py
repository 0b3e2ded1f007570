"""``enforcer scan s3://bucket[/prefix]``: backfill the objects that exist already.

Notifications only cover writes made after the enforcer was deployed; a scan lists the bucket's
current objects under a prefix (ListObjectsV2) and runs each through the same
:meth:`~enforcer.engine.pipeline.Pipeline.handle` as the service, ``concurrency`` at a time,
publishing one audit record per object to the audit topic. ``--dry-run`` runs it in audit mode.

Failures are per object: a permanent error (missing key, access denied, ...) is audited as
``failed`` and the scan moves on. A dependency outage (KMS or storage unreachable even after the
pipeline's retries) is not audited — the object was not handled — and after
``outage.failures_before_pause`` of them in a row the scan stops listing and reports itself aborted:
rerun it when the dependency is back (every action is idempotent).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from enforcer.app import Runtime, open_runtime
from enforcer.config import Settings
from enforcer.core.events import ObjectEvent
from enforcer.core.policy import Mode, RequiredKey
from enforcer.engine.pipeline import Announce, Outcome, Pipeline
from enforcer.errors import EnforcerError, KeyDisabled, KeyMissing, TransientError
from enforcer.kafka.sink import open_kafka_sink
from enforcer.preflight import check_scan
from enforcer.records import AuditRecord, RecordSink, audit_record, intent_record
from enforcer.retrying import retry_transient
from enforcer.storage.listing import S3Listing
from enforcer.storage.port import ObjectSnapshot
from enforcer.telemetry import KEY_ALERTS, TRACER

#: How many failures the summary lists one by one (all of them are counted).
MAX_LISTED_FAILURES = 20


@dataclass
class ScanSummary:
    """What a scan did; printed as JSON on stdout."""

    bucket: str
    prefix: str
    mode: str
    audit_topic: str
    objects: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    aborted: str | None = None

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.aborted is None

    def count(self, record: AuditRecord) -> None:
        self.objects += 1
        self.verdicts[record.verdict.value if record.verdict else "unknown"] += 1
        self.actions[record.action.value] += 1

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
            "verdicts": dict(sorted(self.verdicts.items())),
            "actions": dict(sorted(self.actions.items())),
            "failed": self.failed,
            "failures": self.failures,
            "aborted": self.aborted,
            "ok": self.ok,
        }


class Scanner:
    """Runs listed keys through the pipeline with bounded concurrency and audits each one."""

    def __init__(
        self,
        pipeline: Pipeline,
        sink: RecordSink,
        summary: ScanSummary,
        *,
        concurrency: int,
        outage_threshold: int,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pipeline = pipeline
        self._sink = sink
        self._summary = summary
        self._mode = Mode(summary.mode)
        self._concurrency = concurrency
        self._outage_threshold = outage_threshold
        self._outages_in_a_row = 0
        self._stop = asyncio.Event()
        self._run_id = uuid.uuid4().hex
        self._now = now

    async def run(self, keys: AsyncIterator[str]) -> ScanSummary:
        """Feed ``keys`` to ``concurrency`` workers through a bounded queue (no task per key)."""
        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=self._concurrency * 2)
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self._concurrency):
                    group.create_task(self._work(queue))
                async for key in keys:  # a listing error cancels the workers
                    if self._stop.is_set():
                        break
                    await queue.put(key)
                for _ in range(self._concurrency):
                    await queue.put(None)
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None
        return self._summary

    async def _work(self, queue: asyncio.Queue[str | None]) -> None:
        while (key := await queue.get()) is not None:
            if not self._stop.is_set():
                await self._scan_one(key)

    async def _scan_one(self, key: str) -> None:
        bucket = self._summary.bucket
        event = ObjectEvent(
            event_id=self._event_id(bucket, key),
            event_name="scan",
            bucket=bucket,
            key=key,
            source_format="s3",
        )
        with TRACER.start_as_current_span("scan.object", attributes={"bucket": bucket}):
            started = time.monotonic()
            outcome = Outcome()
            try:
                outcome = await self._pipeline.handle(
                    event, outcome, self._announcer(event, outcome)
                )
            except TransientError as exc:
                self._outage(key, exc)
                return
            except EnforcerError as exc:
                record = self._failed(event, outcome, exc, started)
            else:
                record = self._audit(event, outcome, started)
            self._outages_in_a_row = 0
            await retry_transient(lambda: self._sink.publish_audit(record))
            self._summary.count(record)

    def _announcer(self, event: ObjectEvent, outcome: Outcome) -> Announce:
        """Publishes the intent record before each rewrite, as the service does."""

        async def announce(snapshot: ObjectSnapshot, required: RequiredKey) -> None:
            record = intent_record(event, snapshot, required, outcome.verdict,
                                   default_mode=self._mode, now=self._now())  # fmt: skip
            await retry_transient(lambda: self._sink.publish_audit(record))

        return announce

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
        if self._outages_in_a_row >= self._outage_threshold and not self._stop.is_set():
            self._stop.set()
            self._summary.aborted = (
                f"{exc.code} on {self._outages_in_a_row} objects in a row: stopped listing; "
                "rerun the scan once the dependency is back (it is idempotent)"
            )

    def _audit(
        self, event: ObjectEvent, outcome: Outcome, started: float, reason: str | None = None
    ) -> AuditRecord:
        """The audit record the service would write for this outcome."""
        return audit_record(event, outcome, default_mode=self._mode, started=started,
                            now=self._now(), failure=reason)  # fmt: skip

    def _event_id(self, bucket: str, key: str) -> str:
        """Unique per scan run and object, stable within the run."""
        material = "\x00".join(("scan", self._run_id, bucket, key))
        return hashlib.sha256(material.encode()).hexdigest()[:32]


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a worker or the lister raised (EnforcerError first), out of its task group."""
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


async def run_scan(settings: Settings, bucket: str, prefix: str, mode: Mode) -> ScanSummary:
    """``enforcer scan``: list ``bucket/prefix``, handle and audit every current object."""
    summary = ScanSummary(bucket, prefix, mode.value, settings.kafka.audit_topic)
    async with open_runtime(settings, mode) as runtime:
        await check_scan(settings, S3Listing.of(runtime.storage), bucket)
        return await _scan(settings, runtime, summary, bucket, prefix)


async def _scan(
    settings: Settings, runtime: Runtime, summary: ScanSummary, bucket: str, prefix: str
) -> ScanSummary:
    async with open_kafka_sink(settings.kafka) as sink:
        scanner = Scanner(
            runtime.pipeline,
            sink,
            summary,
            concurrency=settings.concurrency,
            outage_threshold=settings.outage.failures_before_pause,
        )
        return await scanner.run(S3Listing.of(runtime.storage).list_keys(bucket, prefix))
