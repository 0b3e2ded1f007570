"""Backfill ranges (enforcer.engine.backfill) on in-memory transactions: progress and final
records commit together, a runner killed at any point hands over to the next with exactly one
committed final record per object, and intent records stay outside the transactions."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from doubles.sink import MemorySink
from doubles.storage import MemoryStorage
from hypothesis import given, settings
from hypothesis import strategies as st

from enforcer.core.policy import Mode, PolicyFile, RequiredKey, Strategy
from enforcer.core.verdict import Action, Encryption
from enforcer.engine.backfill import RangeLedger, RangeRunner
from enforcer.engine.checkpoint import DoneTracker
from enforcer.engine.guard import ObjectGuard
from enforcer.engine.objects import ListedFacts, ListedObject, ObjectSnapshot, SseKmsTarget
from enforcer.engine.outage import OutageGate
from enforcer.engine.pipeline import Pipeline
from enforcer.engine.range_tasks import RangeProgress, RangeTask
from enforcer.engine.records import AuditRecord, DeadLetterRecord
from enforcer.engine.rules import KeyCanon, RuleResolver
from enforcer.errors import KafkaUnavailable

NOW = datetime(2026, 12, 1, tzinfo=UTC)


class Broker:
    """What read_committed readers see: committed records and the last committed progress."""

    def __init__(self) -> None:
        self.committed: list[AuditRecord] = []
        self.progress: RangeProgress | None = None
        self.commits = 0


class MemoryTransaction:
    """The RangeRecords port in memory: records wait in the open transaction until commit."""

    def __init__(self, broker: Broker, fail_after: int | None = None) -> None:
        self.broker = broker
        self.pending: list[AuditRecord] = []
        self.sent = 0
        self._fail_after = fail_after

    async def publish_audit(self, record: AuditRecord) -> None:
        await asyncio.sleep(0)  # a send is a round trip: others run meanwhile
        if self._fail_after is not None and self.sent >= self._fail_after:
            raise KafkaUnavailable("broker gone")
        self.sent += 1
        self.pending.append(record)

    async def publish_dead_letter(self, record: DeadLetterRecord, key: bytes | None) -> None:
        raise AssertionError("a backfill has no input message to dead-letter")

    async def commit(self, progress: RangeProgress) -> None:
        await asyncio.sleep(0)
        self.broker.committed += self.pending
        self.broker.progress = progress
        self.broker.commits += 1
        self.pending = []


def bucket(count: int, plain_every: int = 3) -> MemoryStorage:
    storage = MemoryStorage()
    storage.bucket_keys["b"] = "ek"
    for n in range(count):
        if n % plain_every == 0:
            storage.put("b", f"k{n:04d}", b"data")
        else:
            storage.put("b", f"k{n:04d}", b"data", Encryption.SSE_KMS, "arn:aws:kms:ek")
    return storage


def guard_on(storage: MemoryStorage, intents: MemorySink) -> ObjectGuard:
    async def sse_kms(snapshot: ObjectSnapshot, required: RequiredKey, tags: dict[str, str]) -> Any:
        await asyncio.sleep(0)
        return await storage.rewrite_sse_kms(snapshot, SseKmsTarget(required.key), tags)

    pipeline = Pipeline(storage=storage, rules=RuleResolver(PolicyFile(), storage, ttl=60),
                        keys=KeyCanon(), mode=Mode.ENFORCE,
                        rewriters={Strategy.SSE_KMS: sse_kms})  # fmt: skip
    return ObjectGuard(pipeline, intents, OutageGate(threshold=3, probe_interval=60), Mode.ENFORCE,
                       concurrency=4)  # fmt: skip


def lister(storage: MemoryStorage) -> Any:
    async def list_range(
        bucket_name: str, prefix: str, after: str | None, through: str | None
    ) -> AsyncIterator[ListedObject]:
        for (name, key), versions in sorted(storage.objects.items()):
            current = versions[-1].snapshot
            if name != bucket_name or (after is not None and key <= after):
                continue
            if through is not None and key > through:
                return
            await asyncio.sleep(0)
            facts = ListedFacts(current.encryption, current.kms_key)
            yield ListedObject(bucket_name, key, etag=current.etag, size=4, facts=facts)

    return list_range


TASK = RangeTask(backfill_id="bf1", index=0, total=1, bucket="b", created=NOW)


async def test_a_range_commits_its_records_with_its_progress() -> None:
    storage, intents, broker = bucket(30), MemorySink(), Broker()
    runner = RangeRunner(guard_on(storage, intents), lister(storage), owner="r1",
                         commit_every=0.001, now=lambda: NOW)  # fmt: skip

    assert await runner.run(TASK, MemoryTransaction(broker), None) is True

    assert sorted(r.key for r in broker.committed) == [f"k{n:04d}" for n in range(30)]
    progress = broker.progress
    assert progress is not None and progress.complete and progress.objects == 30
    assert progress.actions == {"reencrypted": 10, "none": 20} and progress.owner == "r1"
    assert progress.done_beyond == [] and progress.after_key == "k0029"
    assert {r.action for r in intents.audit} == {Action.REWRITING} and len(intents.audit) == 10
    assert await runner.run(TASK, MemoryTransaction(broker), progress) is True  # no-op


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 120), st.integers(1, 3))
def test_a_runner_killed_anywhere_hands_over_with_one_final_record_each(
    kill_after: int, plain_every: int
) -> None:
    asyncio.run(_kill_and_continue(kill_after, plain_every))


async def _kill_and_continue(kill_after: int, plain_every: int) -> None:
    storage, intents, broker = bucket(60, plain_every), MemorySink(), Broker()
    guard = guard_on(storage, intents)
    first = RangeRunner(guard, lister(storage), owner="dead", commit_every=0.0005, now=lambda: NOW)
    dying = asyncio.create_task(first.run(TASK, MemoryTransaction(broker), None))
    for _ in range(kill_after):  # SIGKILL after some turns of the loop: the open
        await asyncio.sleep(0)  # transaction is simply never committed
    dying.cancel()  # (it may have finished already: then the next runner has nothing to do)
    await asyncio.gather(dying, return_exceptions=True)

    second = RangeRunner(guard, lister(storage), owner="next", commit_every=0.0005, now=lambda: NOW)
    assert await second.run(TASK, MemoryTransaction(broker), broker.progress) is True

    finals = Counter(r.key for r in broker.committed)
    assert sorted(finals) == [f"k{n:04d}" for n in range(60)] and set(finals.values()) == {1}
    assert broker.progress is not None and broker.progress.objects == 60
    for n in range(0, 60, plain_every):  # every plaintext object re-encrypted, and audited so
        key = f"k{n:04d}"
        [final] = [r for r in broker.committed if r.key == key]
        wrote = [i for i in intents.audit if i.key == key and i.event_id == final.event_id]
        assert final.action is Action.REENCRYPTED or (final.verdict == "compliant" and wrote)
        stored = storage.latest("b", key)
        assert stored is not None and stored.snapshot.kms_key == "arn:aws:kms:ek"


async def test_a_failed_send_spoils_the_transaction() -> None:
    storage, intents, broker = bucket(20), MemorySink(), Broker()
    runner = RangeRunner(guard_on(storage, intents), lister(storage), commit_every=60,
                         now=lambda: NOW)  # fmt: skip
    with pytest.raises(KafkaUnavailable):
        await runner.run(TASK, MemoryTransaction(broker, fail_after=5), None)
    assert broker.committed == [] and broker.progress is None


async def test_the_ledger_notes_keys_done_past_the_prefix() -> None:
    broker = Broker()
    ledger = RangeLedger(MemoryTransaction(broker), RangeProgress.first(TASK, NOW), "r")
    tracker = DoneTracker()
    first, second, third = (tracker.dispatch(k) for k in ("a", "b", "c"))
    for key, position in (("a", first), ("c", third)):
        await ledger.publish_audit(_record(key))
        tracker.finish(position)
    await ledger.publish_audit(_record("c"))  # a send retried: the same object, counted once
    await ledger.commit(tracker, complete=False, now=NOW)
    progress = broker.progress
    assert progress is not None
    assert (progress.after_key, progress.done_beyond, progress.objects) == ("a", ["c"], 2)
    await ledger.publish_audit(_record("b"))
    tracker.finish(second)
    await ledger.commit(tracker, complete=True, now=NOW)
    assert broker.progress is not None and broker.progress.after_key == "c"
    assert broker.progress.done_beyond == [] and broker.progress.complete


def _record(key: str) -> AuditRecord:
    return AuditRecord(event_id=key, bucket="b", key=key, action=Action.NONE, duration_ms=0,
                       mode="enforce", timestamp=NOW, enforcer_version="t")  # fmt: skip
