"""A distributed backfill on Kafka: range tasks published, each range's final audit records and
progress committed in one transaction, the committed progress read back (the engine's side is
:mod:`enforcer.engine.backfill`; the consumer of tasks is :mod:`enforcer.kafka.ranges`).

* Tasks go to the backfill-tasks topic round-robin over its partitions, keyed
  ``<backfill id>/<range>``, so the replicas of the group share them.
* A range's records are written by a transactional producer whose id names the range: whoever
  opens it aborts what an earlier owner left open and fences that owner for good.
* Progress is read with ``read_committed`` from the compacted progress topic: only what a
  committed transaction said, never what an aborted one did.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from pydantic import ValidationError

from enforcer.engine.range_tasks import RangeProgress, RangeTask
from enforcer.engine.records import AuditRecord, DeadLetterRecord
from enforcer.errors import KafkaUnavailable, RangeMoved
from enforcer.kafka.clients import kafka_call, open_consumer, open_producer
from enforcer.kafka.options import KafkaOptions
from enforcer.kafka.reader import topic_partitions

#: Give up reading when a topic yields nothing for this long while records are still expected.
STALL_SECONDS = 30.0


class KafkaRangeRecords:
    """One range's final records and progress, in transactions (the engine's ``RangeRecords``
    port); a transaction is open from start to close."""

    def __init__(self, producer: AIOKafkaProducer, kafka: KafkaOptions) -> None:
        self._producer = producer
        self._kafka = kafka
        #: A transaction is open (records since the last commit would be aborted).
        self.open = True

    async def publish_audit(self, record: AuditRecord) -> None:
        await self._send(self._kafka.audit_topic, record.model_dump_json().encode(),
                         record.kafka_key)  # fmt: skip

    async def publish_dead_letter(self, record: DeadLetterRecord, key: bytes | None) -> None:
        await self._send(self._kafka.dlq_topic, record.model_dump_json().encode(), key)

    async def commit(self, progress: RangeProgress) -> None:
        key = progress_key(progress.backfill_id, progress.index)
        await self._send(self._kafka.backfill_progress_topic,
                         progress.model_dump_json().encode(), key)  # fmt: skip
        await kafka_call(self._producer.commit_transaction(), "committing a backfill range")
        self.open = False
        await kafka_call(self._producer.begin_transaction(), "opening a transaction")
        self.open = True

    async def _send(self, topic: str, value: bytes, key: bytes | None) -> None:
        await kafka_call(self._producer.send_and_wait(topic, value=value, key=key),
                         f"publishing to {topic}")  # fmt: skip


def transactional_id(kafka: KafkaOptions, task: RangeTask) -> str:
    """One id per range of one backfill, whoever runs it."""
    return f"{kafka.group_id}.backfill.{task.backfill_id}.{task.index}"


def progress_key(backfill_id: str, index: int) -> bytes:
    return f"{backfill_id}/{index:05d}".encode()


@asynccontextmanager
async def open_range_records(
    kafka: KafkaOptions, task: RangeTask
) -> AsyncIterator[KafkaRangeRecords]:
    """The range's transactional producer, a transaction open; what is not committed when the
    block ends is aborted."""
    async with open_producer(kafka, "range", transactional_id=transactional_id(kafka, task)) as p:
        await kafka_call(p.begin_transaction(), "opening a transaction")
        records = KafkaRangeRecords(p, kafka)
        try:
            yield records
        finally:
            if records.open:
                # If this fails, the broker aborts it at the transaction timeout, or the next
                # owner of the range does.
                with contextlib.suppress(KafkaUnavailable, RangeMoved):
                    await kafka_call(p.abort_transaction(), "aborting a backfill range")


async def publish_tasks(kafka: KafkaOptions, tasks: Iterable[RangeTask]) -> int:
    """Publish ``tasks`` round-robin over the tasks topic's partitions; how many."""
    topic = kafka.backfill_tasks_topic
    async with open_producer(kafka, "backfill") as producer:
        partitions = sorted(await kafka_call(producer.partitions_for(topic), f"describing {topic}"))
        count = 0
        for count, task in enumerate(tasks, start=1):  # noqa: B007 - the count is the result
            await kafka_call(
                producer.send_and_wait(topic, task.model_dump_json().encode(),
                                       key=task.task_key.encode(),
                                       partition=partitions[task.index % len(partitions)]),
                f"publishing to {topic}",
            )  # fmt: skip
    return count


async def read_progress(kafka: KafkaOptions, key: bytes | None = None) -> dict[str, RangeProgress]:
    """The last committed progress per range (``read_committed``); with ``key``, only the
    partition that holds it is read."""
    topic = kafka.backfill_progress_topic
    latest: dict[str, RangeProgress] = {}
    async with open_consumer(kafka, None, "progress", auto_offset_reset="earliest",
                             max_poll_records=2000, read_committed=True) as consumer:  # fmt: skip
        partitions = await topic_partitions(consumer, kafka, topic)
        if key is not None and partitions:
            numbers = [tp.partition for tp in partitions]
            chosen = DefaultPartitioner()(key, numbers, numbers)
            partitions = [TopicPartition(topic, chosen)]
        async for record_key, value in _read(consumer, partitions):
            if key is not None and record_key != key:
                continue
            try:
                progress = RangeProgress.model_validate_json(value or b"")
            except ValidationError:
                continue  # not ours: a stranger's record on the topic
            latest[(record_key or b"").decode()] = progress
    return latest


async def _read(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> AsyncIterator[tuple[bytes | None, bytes | None]]:
    """(key, value) of ``partitions`` from their beginning to the end they have now (with
    ``read_committed``: the last stable offset)."""
    if not partitions:
        return
    consumer.assign(partitions)
    await kafka_call(consumer.seek_to_beginning(*partitions), "seeking")
    ends = await kafka_call(consumer.end_offsets(partitions), "end offsets")
    remaining = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
    last = time.monotonic()
    while remaining:
        batch = await kafka_call(consumer.getmany(*remaining, timeout_ms=500), "reading")
        for tp, messages in batch.items():
            for message in messages:
                if message.offset < ends[tp]:
                    yield message.key, message.value
            last = time.monotonic()
        remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        if remaining and time.monotonic() - last > STALL_SECONDS:
            raise KafkaUnavailable(f"no records for {STALL_SECONDS:.0f}s while reading to the end")


@dataclass
class BackfillStatus:
    """One backfill across the group: its ranges, what they classified, how fast."""

    backfill_id: str
    bucket: str
    ranges: int
    started: int = 0
    done: int = 0
    objects: int = 0
    failed: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    first: datetime | None = None
    last: datetime | None = None

    @property
    def rate(self) -> float | None:
        """Objects per second from the first range's start to the last commit."""
        if self.first is None or self.last is None or self.last <= self.first:
            return None
        return self.objects / (self.last - self.first).total_seconds()

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left, estimated from the objects per finished range and the rate."""
        rate = self.rate
        if not self.done or not rate or self.done == self.ranges:
            return 0.0 if self.done == self.ranges else None
        per_range = self.objects / max(self.started, 1)
        return (self.ranges - self.done) * per_range / rate

    def as_dict(self) -> dict[str, object]:
        rate, eta = self.rate, self.eta_seconds
        return {
            "backfill_id": self.backfill_id, "bucket": self.bucket, "ranges": self.ranges,
            "ranges_started": self.started, "ranges_done": self.done, "objects": self.objects,
            "failed": self.failed, "verdicts": dict(sorted(self.verdicts.items())),
            "objects_per_second": round(rate, 1) if rate else None,
            "eta_seconds": round(eta) if eta is not None else None,
            "complete": self.done == self.ranges,
            "updated": self.last.isoformat() if self.last else None,
        }  # fmt: skip


def summarize(progress: Iterable[RangeProgress]) -> list[BackfillStatus]:
    """Per backfill, the sum of its ranges' last committed progress (pure)."""
    found: dict[str, BackfillStatus] = {}
    for p in progress:
        status = found.setdefault(p.backfill_id, BackfillStatus(p.backfill_id, p.bucket, p.total))
        status.started += 1
        status.done += p.complete
        status.objects += p.objects
        status.failed += p.failed
        for verdict, count in p.verdicts.items():
            status.verdicts[verdict] = status.verdicts.get(verdict, 0) + count
        status.first = min(p.started, status.first or p.started)
        status.last = max(p.updated, status.last or p.updated)
    return sorted(found.values(), key=lambda s: s.first or s.last or datetime.min)


def render(statuses: list[BackfillStatus]) -> str:
    """A small table: one line per backfill."""
    if not statuses:
        return "no backfill ranges have reported progress"
    lines = [f"{'backfill':<18} {'bucket':<24} {'ranges done':>12} {'objects':>12} "
             f"{'objects/s':>10} {'ETA':>10}"]  # fmt: skip
    for s in statuses:
        d = s.as_dict()
        eta = "done" if d["complete"] else (f"{d['eta_seconds']}s" if d["eta_seconds"] is not None
                                            else "unknown")  # fmt: skip
        rate = d["objects_per_second"] or "-"
        lines.append(f"{s.backfill_id:<18} {s.bucket:<24} {f'{s.done}/{s.ranges}':>12} "
                     f"{s.objects:>12,} {rate!s:>10} {eta:>10}")  # fmt: skip
    return "\n".join(lines)


def as_json(statuses: list[BackfillStatus]) -> str:
    return json.dumps([s.as_dict() for s in statuses], indent=2)
