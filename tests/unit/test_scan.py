"""Scanner (enforcer.cli.scan) over the in-memory storage and sink: counts, failures, outages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from doubles.sink import MemorySink
from doubles.storage import MemoryStorage

from enforcer.cli.scan import MAX_LISTED_FAILURES, Scanner, ScanSummary
from enforcer.core.policy import Mode, PolicyFile, RequiredKey, Strategy
from enforcer.core.verdict import Encryption
from enforcer.engine.pipeline import Pipeline, Rewriter
from enforcer.engine.rules import KeyCanon, RuleResolver
from enforcer.errors import KeyMissing, KmsUnavailable
from enforcer.storage.port import ObjectSnapshot, SseKmsTarget, WriteResult


async def listed(keys: Iterable[str]) -> AsyncIterator[str]:
    for key in keys:
        yield key


def scanner(
    storage: MemoryStorage,
    sink: MemorySink,
    *,
    mode: Mode = Mode.ENFORCE,
    rewrite: Rewriter | None = None,
    concurrency: int = 4,
) -> tuple[Scanner, ScanSummary]:
    async def sse_kms(
        snapshot: ObjectSnapshot, required: RequiredKey, tags: dict[str, str]
    ) -> WriteResult:
        return await storage.rewrite_sse_kms(snapshot, SseKmsTarget(required.key), tags)

    pipeline = Pipeline(
        storage=storage,
        rules=RuleResolver(PolicyFile(), storage, ttl=60),
        keys=KeyCanon(),
        mode=mode,
        rewriters={Strategy.SSE_KMS: rewrite or sse_kms},
    )
    summary = ScanSummary("b", "", mode.value, "audit")
    return Scanner(pipeline, sink, summary, concurrency=concurrency, outage_threshold=3), summary


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


async def test_audit_mode_writes_nothing() -> None:
    storage = bucket_with(("plain", Encryption.NONE, None))
    sink = MemorySink()
    scan, summary = scanner(storage, sink, mode=Mode.AUDIT)
    await scan.run(listed(["plain"]))
    assert summary.actions == {"would_reencrypt": 1}
    assert storage.writes == 0 and sink.final[0].mode == "audit"


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


async def test_concurrency_is_bounded() -> None:
    storage = bucket_with(*[(f"k{i}", Encryption.NONE, None) for i in range(20)])
    running, peak = 0, 0

    async def slow(
        snapshot: ObjectSnapshot, required: RequiredKey, tags: dict[str, str]
    ) -> WriteResult:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return await storage.rewrite_sse_kms(snapshot, SseKmsTarget(required.key), tags)

    scan, summary = scanner(storage, MemorySink(), rewrite=slow, concurrency=3)
    await scan.run(listed(f"k{i}" for i in range(20)))
    assert summary.actions == {"reencrypted": 20}
    assert peak == 3
