"""Scanner (enforcer.engine.scanner) over the in-memory storage and sink: listed facts, HEAD
fallback, enqueue, versions, failures, outages, interruption."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta

from doubles.sink import MemorySink
from doubles.storage import MemoryStorage
from doubles.time import settle

from enforcer.core.events import BACKFILL_EVENT_SOURCE, ObjectEvent, parse_message
from enforcer.core.policy import Mode, PolicyFile, RequiredKey, Rule, Strategy, VersionsPolicy
from enforcer.core.verdict import Encryption
from enforcer.engine.checkpoint import DoneTracker
from enforcer.engine.guard import ObjectGuard
from enforcer.engine.objects import (
    ListedFacts,
    ListedObject,
    ObjectSnapshot,
    PreservedAttributes,
    SseKmsTarget,
    WriteResult,
)
from enforcer.engine.outage import OutageGate
from enforcer.engine.pipeline import Pipeline, Rewriter
from enforcer.engine.records import ScanLine
from enforcer.engine.rules import KeyCanon, RuleResolver
from enforcer.engine.scanner import MAX_LISTED_FAILURES, Scanner, ScanOptions, ScanSummary
from enforcer.errors import KeyMissing, KmsUnavailable


class MemoryEvents:
    def __init__(self) -> None:
        self.published: list[tuple[bytes, bytes]] = []

    async def publish_event(self, key: bytes, value: bytes) -> None:
        self.published.append((key, value))


async def listed(items: Iterable[ListedObject | str]) -> AsyncIterator[ListedObject]:
    for item in items:
        yield ListedObject("b", item) if isinstance(item, str) else item


def with_facts(key: str, encryption: Encryption, kms_key: str | None = None) -> ListedObject:
    return ListedObject("b", key, etag='"x"', size=4, facts=ListedFacts(encryption, kms_key))


def scanner(
    storage: MemoryStorage,
    sink: MemorySink,
    *,
    mode: Mode = Mode.ENFORCE,
    rewrite: Rewriter | None = None,
    concurrency: int = 4,
    events: MemoryEvents | None = None,
    policy: PolicyFile | None = None,
    lines: list[ScanLine] | None = None,
) -> tuple[Scanner, ScanSummary]:
    async def sse_kms(
        snapshot: ObjectSnapshot, required: RequiredKey, tags: dict[str, str]
    ) -> WriteResult:
        return await storage.rewrite_sse_kms(snapshot, SseKmsTarget(required.key), tags)

    pipeline = Pipeline(
        storage=storage,
        rules=RuleResolver(policy or PolicyFile(), storage, ttl=60),
        keys=KeyCanon(),
        mode=mode,
        rewriters={Strategy.SSE_KMS: rewrite or sse_kms},
    )
    summary = ScanSummary("b", "", mode.value, "audit")
    gate = OutageGate(threshold=3, probe_interval=60)
    guard = ObjectGuard(pipeline, sink, gate, mode, concurrency=concurrency,
                        waits_out_outages=False)  # fmt: skip
    sink_lines = lines if lines is not None else []
    scanner = Scanner(guard, summary, ScanOptions(events=events), on_line=sink_lines.append)
    return scanner, summary


def bucket_with(*objects: tuple[str, Encryption, str | None]) -> MemoryStorage:
    storage = MemoryStorage()
    storage.bucket_keys["b"] = "ek"
    for key, encryption, kms_key in objects:
        storage.put("b", key, b"data", encryption=encryption, kms_key=kms_key)
    return storage


async def test_every_listed_object_is_handled_and_audited() -> None:
    storage = bucket_with(
        ("plain", Encryption.NONE, None),
        ("s3", Encryption.SSE_S3, None),
        ("good", Encryption.SSE_KMS, "arn:aws:kms:ek"),
    )
    sink = MemorySink()
    scan, summary = scanner(storage, sink)

    await scan.run(listed(["plain", "s3", "good", "vanished"]))

    assert summary.ok and summary.objects == 4
    assert summary.verdicts == {"plaintext": 1, "sse_s3": 1, "compliant": 1, "gone": 1}
    assert summary.actions == {"reencrypted": 2, "none": 1, "skipped": 1}
    assert sorted(r.key for r in sink.final) == ["good", "plain", "s3", "vanished"]
    assert {r.event_name for r in sink.final} == {"scan"}
    assert len({r.event_id for r in sink.final}) == 4
    assert storage.writes == 2
    assert scan.tracker.consumed == 4


async def test_compliant_objects_from_the_listing_cost_no_request() -> None:
    storage = bucket_with(*[(f"k{i}", Encryption.SSE_KMS, "arn:aws:kms:ek") for i in range(10)])
    sink, lines = MemorySink(), []  # type: ignore[var-annotated]
    scan, summary = scanner(storage, sink, lines=lines)

    await scan.run(
        listed(with_facts(f"k{i}", Encryption.SSE_KMS, "arn:aws:kms:ek") for i in range(10))
    )

    assert storage.heads == 0 and storage.writes == 0
    assert summary.verdicts == {"compliant": 10} and summary.from_listing == 10
    assert len(sink.final) == 10 and {line.source for line in lines} == {"listing"}
    assert len({r.trace_id for r in sink.final}) == 1  # the listing's span, not one per object
    assert sink.final[0].trace_id


async def test_a_listed_verdict_is_checked_with_head_before_a_rewrite() -> None:
    # the listing (stale) says plaintext; the object is compliant by now: nothing is written
    storage = bucket_with(("k", Encryption.SSE_KMS, "arn:aws:kms:ek"))
    sink = MemorySink()
    scan, summary = scanner(storage, sink)

    await scan.run(listed([with_facts("k", Encryption.NONE)]))

    assert storage.heads == 1 and storage.writes == 0
    assert summary.verdicts == {"compliant": 1}


async def test_entries_without_listed_facts_fall_back_to_head() -> None:
    storage = bucket_with(("a", Encryption.NONE, None))
    scan, summary = scanner(storage, MemorySink())
    await scan.run(listed(["a"]))
    assert storage.heads >= 1 and summary.actions == {"reencrypted": 1}
    assert summary.from_listing == 0


async def test_enqueue_publishes_backfill_events_only_for_non_compliant_objects() -> None:
    storage = bucket_with(
        ("good", Encryption.SSE_KMS, "arn:aws:kms:ek"), ("my file+1", Encryption.NONE, None)
    )
    sink, events = MemorySink(), MemoryEvents()
    scan, summary = scanner(storage, sink, events=events)

    await scan.run(
        listed(
            [
                with_facts("good", Encryption.SSE_KMS, "arn:aws:kms:ek"),
                with_facts("my file+1", Encryption.NONE),
                "unknown",
            ]
        )
    )

    assert storage.writes == 0 and storage.heads == 0
    assert [r.key for r in sink.final] == ["good"]
    assert summary.actions == {"none": 1, "enqueued": 2}
    keys = [key for key, _ in events.published]
    assert keys == [b"b/my file+1", b"b/unknown"]
    parsed = parse_message(events.published[0][1])
    assert isinstance(parsed[0], ObjectEvent)
    assert (parsed[0].bucket, parsed[0].key) == ("b", "my file+1")
    assert BACKFILL_EVENT_SOURCE.encode() in events.published[0][1]


async def test_audit_mode_writes_nothing() -> None:
    storage = bucket_with(("plain", Encryption.NONE, None))
    sink = MemorySink()
    scan, summary = scanner(storage, sink, mode=Mode.AUDIT)
    await scan.run(listed(["plain"]))
    assert summary.actions == {"would_reencrypt": 1}
    assert storage.writes == 0 and sink.final[0].mode == "audit"


def versioned(
    storage: MemoryStorage, key: str, attributes: PreservedAttributes | None = None
) -> list[ListedObject]:
    """An old plaintext version and a compliant current one, listed newest first."""
    old = storage.put(
        "b", key, b"old", versioned=True, attributes=attributes or PreservedAttributes()
    )
    new = storage.put("b", key, b"new", Encryption.SSE_KMS, "arn:aws:kms:ek", versioned=True)
    return [
        ListedObject("b", key, new.etag, 3, new.version_id, is_latest=True),
        ListedObject("b", key, old.etag, 3, old.version_id, is_latest=False),
    ]


async def test_non_current_versions_are_reported_not_rewritten() -> None:
    storage = bucket_with()
    items = versioned(storage, "k")
    sink = MemorySink()
    scan, summary = scanner(storage, sink)

    await scan.run(listed(items))

    assert storage.writes == 0 and len(storage.objects[("b", "k")]) == 2
    assert summary.verdicts == {"compliant": 1, "plaintext": 1}
    old = next(r for r in sink.final if r.version_id == items[1].version_id)
    assert old.action.value == "skipped" and "non-current" in (old.reason or "")


async def test_non_current_versions_are_purged_where_the_rule_says_so_unless_locked() -> None:
    storage = bucket_with()
    rule = Rule(bucket="b", key="ek", versions=VersionsPolicy.PURGE_NONCOMPLIANT)
    free = versioned(storage, "free")
    locked = versioned(
        storage, "locked", attributes=_locked_until(datetime.now(UTC) + timedelta(days=1))
    )
    sink = MemorySink()
    scan, summary = scanner(storage, sink, policy=PolicyFile(rules=(rule,)))

    await scan.run(listed(free + locked))

    assert [s.snapshot.version_id for s in storage.objects[("b", "free")]] == [free[0].version_id]
    assert len(storage.objects[("b", "locked")]) == 2
    assert summary.actions == {"none": 2, "purged": 1, "skipped": 1}


def _locked_until(when: datetime) -> PreservedAttributes:
    return PreservedAttributes(lock_mode="GOVERNANCE", lock_retain_until=when)


async def test_a_permanent_failure_is_audited_counted_and_the_scan_goes_on() -> None:
    storage = bucket_with(*[(f"k{i}", Encryption.NONE, None) for i in range(30)])
    sink = MemorySink()

    async def missing(snapshot: ObjectSnapshot, required: RequiredKey, tags: object) -> WriteResult:
        raise KeyMissing("no such key", key_name=required.key)

    scan, summary = scanner(storage, sink, rewrite=missing)
    await scan.run(listed(f"k{i}" for i in range(30)))

    assert not summary.ok and summary.aborted is None
    assert (summary.objects, summary.failed) == (30, 30)
    assert len(summary.failures) == MAX_LISTED_FAILURES
    assert {r.action.value for r in sink.final} == {"failed"}
    assert all(r.reason and r.reason.startswith("key_missing:") for r in sink.final)


async def test_an_outage_stops_the_scan_without_auditing() -> None:
    storage = bucket_with(*[(f"k{i}", Encryption.NONE, None) for i in range(50)])
    sink = MemorySink()

    async def down(snapshot: ObjectSnapshot, required: RequiredKey, tags: object) -> WriteResult:
        raise KmsUnavailable("KES is unreachable")

    scan, summary = scanner(storage, sink, rewrite=down, concurrency=1)
    await scan.run(listed(f"k{i}" for i in range(50)))

    assert summary.aborted is not None and "kms_unavailable" in summary.aborted
    assert summary.failed == 3 and sink.final == []
    assert scan.tracker.done_through is None  # nothing done: a resume starts at the beginning


async def test_an_interrupted_scan_finishes_what_it_started_and_knows_where_to_resume() -> None:
    storage = bucket_with(*[(f"k{i:02d}", Encryption.NONE, None) for i in range(40)])
    sink = MemorySink()
    scan, summary = scanner(storage, sink, concurrency=3)

    async def source() -> AsyncIterator[ListedObject]:
        for i in range(40):
            if i == 10:
                scan.interrupt()
            yield ListedObject("b", f"k{i:02d}")

    await scan.run(source())

    assert summary.interrupted and not summary.ok
    done = sorted(r.key for r in sink.final)
    assert done == [f"k{i:02d}" for i in range(len(done))]  # a contiguous prefix
    assert scan.tracker.done_through is not None
    assert scan.tracker.done_through.key == done[-1]
    assert scan.tracker.consumed == len(done) == summary.objects


async def test_concurrency_is_bounded() -> None:
    storage = bucket_with(*[(f"k{i}", Encryption.NONE, None) for i in range(20)])
    running, peak = 0, 0
    three_at_once = asyncio.Event()

    async def slow(
        snapshot: ObjectSnapshot, required: RequiredKey, tags: dict[str, str]
    ) -> WriteResult:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 3:
            three_at_once.set()
        await asyncio.wait_for(three_at_once.wait(), timeout=2)  # hold until three run at once
        await settle()  # give a fourth every chance to start
        running -= 1
        return await storage.rewrite_sse_kms(snapshot, SseKmsTarget(required.key), tags)

    scan, summary = scanner(storage, MemorySink(), rewrite=slow, concurrency=3)
    await scan.run(listed(f"k{i}" for i in range(20)))
    assert summary.actions == {"reencrypted": 20}
    assert peak == 3


def test_done_tracker_advances_over_the_contiguous_prefix_only() -> None:
    tracker = DoneTracker(start_index=5)
    a, b, c = (tracker.dispatch(k) for k in "abc")
    tracker.finish(b)
    assert tracker.done_through is None and tracker.consumed == 5
    tracker.finish(a)
    assert tracker.done_through == b and tracker.consumed == 7
    tracker.finish(c)
    assert tracker.done_through == c and tracker.in_flight == 0
