"""Per-key isolation through the guard and the consumer: a refused key's events are parked
(out of the window, uncommitted), the others flow; after the patience the parked ones are
dead-lettered when the refusal is proven the key's own, enforced when the key works again in
time, and handed to the gate when nothing proves it is not the storage's KMS identity."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import pytest
from aiokafka import TopicPartition
from doubles.kafka import TOPIC, MemoryKafka
from doubles.sink import MemorySink
from doubles.storage import MemoryStorage
from doubles.time import ManualTime, settle
from scrape import value
from waiting import eventually

from enforcer.core.policy import Mode, PolicyFile, RequiredKey, Rule, Strategy
from enforcer.core.verdict import Action
from enforcer.engine.guard import ObjectGuard
from enforcer.engine.handler import RecordHandler
from enforcer.engine.objects import ObjectSnapshot, SseKmsTarget, WriteResult
from enforcer.engine.outage import OutageGate
from enforcer.engine.parking import KeyParking
from enforcer.engine.pipeline import Pipeline
from enforcer.engine.rules import KeyCanon, RuleResolver
from enforcer.errors import KeyMissing, KmsNotAuthorized, StorageUnavailable
from enforcer.kafka.consumer import EventConsumer

REFUSED_KEY, OTHER_REFUSED, GOOD_KEY = "refused-key", "refused-other", "good-key"


def minio(bucket: str, key: str) -> bytes:
    record = {"eventName": "s3:ObjectCreated:Put",
              "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}  # fmt: skip
    return json.dumps({"EventName": "s3:ObjectCreated:Put", "Key": f"{bucket}/{key}",
                       "Records": [record]}).encode()  # fmt: skip


async def until(condition: Callable[[], bool], what: str) -> None:
    """:func:`eventually` ``condition`` (every 10 ms, for 10 s at most)."""
    await eventually(condition, what, timeout=10, every=0.01)


async def until_retried(t: Tenants, condition: Callable[[], bool], what: str) -> None:
    """:func:`until` ``condition``, moving the parked events' time on by 10 ms at each look
    (their retries come due)."""

    def moved() -> bool:
        if condition():
            return True
        t.time.advance(0.01)
        return False

    await eventually(moved, what, timeout=10, every=0.01)


async def patience_over(t: Tenants) -> None:
    """The parked events' patience ends (their time moves past it)."""
    t.time.advance(t.parking.patience)
    await settle()


class FlakyStorage(MemoryStorage):
    """A store that can go away (every HEAD fails while ``down``)."""

    down = False

    async def head(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> ObjectSnapshot | None:
        if self.down:
            raise StorageUnavailable("connection refused")
        return await super().head(bucket, key, version_id)


class Tenants:
    """Bucket ``r`` needs a key the KMS refuses (until :attr:`fixed`), bucket ``g`` a good one;
    the service's guard parks with ``patience``, on :attr:`time` (moved by hand); one slot, so
    the window is 4 records."""

    def __init__(self, patience: float, refusal: Exception | None = None) -> None:
        self.storage = FlakyStorage()
        self.sink = MemorySink()
        self.gate = OutageGate(threshold=2, probe_interval=0.01)
        self.fixed = False
        self.refusal = refusal or KmsNotAuthorized("kms:NotAuthorized")
        self.time = ManualTime()
        self.parking = KeyParking(patience=patience, capacity=100, retry_max=0.02,
                                  retry_initial=0.01, clock=self.time.clock,
                                  sleep=self.time.sleep)  # fmt: skip
        policy = PolicyFile(rules=(Rule(bucket="r", key=REFUSED_KEY),
                                   Rule(bucket="s", key=OTHER_REFUSED),
                                   Rule(bucket="g", key=GOOD_KEY)))  # fmt: skip
        pipeline = Pipeline(self.storage, RuleResolver(policy, self.storage, 60), KeyCanon(),
                            Mode.ENFORCE, {Strategy.SSE_KMS: self.rewrite})  # fmt: skip
        guard = ObjectGuard(pipeline, self.sink, self.gate, Mode.ENFORCE, concurrency=1,
                            parking=self.parking, clock=self.time.clock)  # fmt: skip
        self.handler = RecordHandler(guard)
        self.kafka = MemoryKafka()

    async def rewrite(
        self, snapshot: ObjectSnapshot, required: RequiredKey, tags: dict[str, str]
    ) -> WriteResult:
        if required.key in (REFUSED_KEY, OTHER_REFUSED) and not self.fixed:
            raise self.refusal
        return await self.storage.rewrite_sse_kms(snapshot, SseKmsTarget(required.key), tags)

    def write(self, bucket: str, count: int) -> list[str]:
        keys = [f"{bucket}-{i:02}" for i in range(count)]
        for key in keys:
            self.storage.put(bucket, key, b"x")
            self.kafka.produce(0, f"{bucket}/{key}".encode(), minio(bucket, key))
        return keys

    def consumer(self, drain: bool = True) -> EventConsumer:
        consumer = EventConsumer(
            self.kafka,
            self.handler,
            gate=self.gate,
            concurrency=1,
            shutdown_timeout=10,
            drain_idle=0.05 if drain else None,
        )
        self.handler.listener = consumer
        return consumer

    def finals(self, bucket: str) -> dict[str, list[Action]]:
        by_key: dict[str, list[Action]] = {}
        for record in self.sink.final:
            if record.bucket == bucket:
                by_key.setdefault(record.key, []).append(record.action)
        return by_key


async def test_a_refused_keys_events_are_parked_the_others_flow_then_dead_lettered() -> None:
    t = Tenants(patience=3)
    alerts = value("enforcer_key_alerts_total", key=REFUSED_KEY, error_type="not_authorized")
    refused = t.write("r", 12)  # three windows' worth, first
    good = t.write("g", 3)
    run = asyncio.create_task(t.consumer().run())
    await until(lambda: len(t.finals("g")) == 3 and t.parking.parked() == 12, "12 parked")
    await patience_over(t)
    await asyncio.wait_for(run, timeout=20)

    order = [(r.bucket, r.action) for r in t.sink.final]
    assert order[:3] == [("g", Action.REENCRYPTED)] * 3, "the good key waited for the refused"
    assert t.finals("g") == {key: [Action.REENCRYPTED] for key in good}
    assert t.finals("r") == {key: [Action.FAILED] for key in refused}  # one final record each
    assert len(t.sink.dead_letters) == 12
    assert {d.error_class for d in t.sink.dead_letters} == {"access_denied"}
    assert all("parked" in d.reason and "patience" in d.reason for d in t.sink.dead_letters)
    failed = [r for r in t.sink.final if r.bucket == "r"]
    assert all(r.reason and r.reason.startswith("access_denied:") for r in failed)
    assert not t.gate.is_open and t.parking.parked() == 0
    after = value("enforcer_key_alerts_total", key=REFUSED_KEY, error_type="not_authorized")
    assert after - alerts == 12  # once per event, not per retry
    assert value("enforcer_key_available", key=REFUSED_KEY) == 0
    assert t.kafka.committed[TopicPartition(TOPIC, 0)] == 15


async def test_two_refused_keys_first_pause_nothing_and_the_good_key_flows() -> None:
    t = Tenants(patience=3)
    t.write("r", 6)
    t.write("s", 6)
    good = t.write("g", 2)
    run = asyncio.create_task(t.consumer().run())
    await until(lambda: len(t.finals("g")) == 2 and t.parking.parked() == 12, "12 parked")
    await patience_over(t)
    await asyncio.wait_for(run, timeout=20)
    assert [r.bucket for r in t.sink.final[:2]] == ["g", "g"]
    assert t.finals("g") == {key: [Action.REENCRYPTED] for key in good}
    assert len(t.sink.dead_letters) == 12 and t.gate.describe() == "consuming"


async def test_a_key_that_works_again_within_the_patience_is_enforced_without_a_replay() -> None:
    t = Tenants(patience=30, refusal=KeyMissing("no such key", key_name=REFUSED_KEY))
    refused = t.write("r", 8)
    good = t.write("g", 2)
    consumer = t.consumer()
    run = asyncio.create_task(consumer.run())
    await until(
        lambda: len(t.finals("g")) == len(good) and t.parking.parked(REFUSED_KEY) == len(refused),
        "the good key's objects done, the refused key's parked",
    )
    committed = t.kafka.committed.get(TopicPartition(TOPIC, 0), 0)
    assert committed == 0, "committed past parked events"
    t.fixed = True  # the key is created
    t.time.advance(0.02)  # the scout's retry is due (retry_max)
    await asyncio.wait_for(run, timeout=10)
    assert t.finals("r") == {key: [Action.REENCRYPTED] for key in refused}
    assert t.sink.dead_letters == [] and t.parking.parked() == 0
    assert t.kafka.committed[TopicPartition(TOPIC, 0)] == 10


async def test_a_refusal_nothing_proves_is_the_keys_goes_to_the_gate_not_the_dlq(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="enforcer.engine")
    t = Tenants(patience=0.2)
    refused = t.write("r", 6)  # only the refused key is in use
    run = asyncio.create_task(t.consumer().run())
    await until(lambda: t.parking.parked() == len(refused), "all parked")
    await patience_over(t)
    await until(lambda: t.gate.is_open, "the gate to open")
    reason = t.gate.describe()
    assert reason.startswith("paused: credentials refused by kms (KmsNotAuthorized: key ")
    assert reason.endswith("and no other key used since)"), reason
    await asyncio.sleep(0.3)  # trials keep failing
    assert t.sink.dead_letters == [] and t.sink.final == []
    t.fixed = True  # e.g. the storage's KMS identity is allowed again
    await asyncio.wait_for(run, timeout=10)
    assert t.finals("r") == {key: [Action.REENCRYPTED] for key in refused}
    assert t.sink.dead_letters == [] and not t.gate.is_open
    lines = [r.getMessage() for r in caplog.records]
    assert sum("not known yet whether the key or the storage's KMS identity" in line
               for line in lines) == 1  # fmt: skip
    assert sum("pausing consumption" in line for line in lines) == 1


async def test_a_patience_that_ends_during_an_outage_dead_letters_only_after_one_more_try() -> None:
    """The key could not be tried while the store was away: no dead letter on that account."""
    t = Tenants(patience=4)
    t.write("r", 2)
    t.write("g", 1)  # after them: the refusal is proven the key's own
    run = asyncio.create_task(t.consumer().run())
    await until(lambda: len(t.finals("g")) == 1 and t.parking.parked() == 2, "2 parked")
    t.storage.down = True
    await until_retried(t, lambda: t.gate.is_open, "the storage outage")
    await patience_over(t)  # both patiences end meanwhile
    assert t.sink.dead_letters == [] and t.parking.parked() == 2
    t.storage.down = False
    await asyncio.wait_for(run, timeout=10)
    assert len(t.sink.dead_letters) == 2 and not t.gate.is_open
    assert all("parked" in d.reason for d in t.sink.dead_letters)


async def test_parked_records_are_abandoned_at_once_on_shutdown_and_stay_uncommitted() -> None:
    t = Tenants(patience=60)
    t.write("r", 3)
    t.write("g", 1)
    consumer = t.consumer(drain=False)
    run = asyncio.create_task(consumer.run())
    await until(lambda: len(t.finals("g")) == 1 and t.parking.parked() == 3, "3 parked")
    started = asyncio.get_running_loop().time()
    consumer.stop()
    await asyncio.wait_for(run, timeout=5)
    assert asyncio.get_running_loop().time() - started < 5  # not the shutdown timeout (10 s)
    assert t.kafka.committed.get(TopicPartition(TOPIC, 0), 0) == 0
    assert t.sink.dead_letters == [] and t.parking.parked() == 0
