"""``enforcer dlq replay``: put dead-lettered events back on the topic they came from.

The DLQ topic is read with its own consumer group, ``<group_id>.dlq-replay``, from its committed
offsets up to the end the topic had when the replay started (records dead-lettered meanwhile are
left for the next replay). Each record's original payload is re-published with its original key
to its original topic — the key partitioner puts it where that object's events go now, so
per-object order holds — and only after the broker has acknowledged it is the DLQ offset
committed (at-least-once: a crash replays a record twice, which the enforcer's idempotent
actions absorb). A record that is not a valid dead-letter record, or whose payload was cut to fit
the DLQ topic (``truncated``), is skipped and counted; it stays on the DLQ topic, and the summary
names its partition, offset and the reason. ``--dry-run`` reads the same
records, publishes and commits nothing, and lists what would be replayed.

Run one replay at a time per group: the replay consumer assigns partitions itself (no group
membership, so no rebalance wait), and two concurrent replays would both publish.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from enforcer.engine.records import DeadLetterRecord
from enforcer.errors import BadEvent, KafkaUnavailable, describe_validation
from enforcer.kafka.clients import kafka_call, open_consumer, open_producer
from enforcer.kafka.options import KafkaOptions
from enforcer.kafka.reader import topic_partitions

#: Header on every replayed record: ``<dlq topic>/<partition>/<offset>`` it came from.
REPLAY_HEADER = "enforcer-dlq-replay"
#: How many skipped records / dry-run records the summary lists one by one.
MAX_LISTED = 50
#: Give up when the DLQ yields nothing for this long while records are still expected.
STALL_SECONDS = 30.0


@dataclass(frozen=True)
class Replay:
    """One dead-letter record, decoded: what to publish where."""

    topic: str
    key: bytes | None
    value: bytes | None
    record: DeadLetterRecord


def decode_dead_letter(value: bytes | None, kafka_key: bytes | None) -> Replay:
    """A DLQ record's value → the original record; :class:`BadEvent` if it is not one (pure).

    The DLQ record's own Kafka key is the original key byte for byte (the service publishes it
    so); ``original_key`` is the fallback.
    """
    try:
        record = DeadLetterRecord.model_validate_json(value or b"")
    except ValidationError as exc:
        where, message = describe_validation(exc)
        raise BadEvent(f"not a dead-letter record: {where or '(record)'}: {message}") from None
    if record.truncated:
        raise BadEvent(
            f"payload was cut to fit the DLQ topic ({record.original_length} bytes, sha256 "
            f"{record.original_sha256}): cannot be replayed; find the original on "
            f"{record.topic}/{record.partition}@{record.offset}"
        )
    payload = record.original_payload
    if payload is None:
        original = None
    elif record.payload_encoding == "base64":
        try:
            original = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise BadEvent("dead-letter payload is marked base64 but is not") from None
    elif record.payload_encoding == "utf-8":
        original = payload.encode("utf-8")
    else:
        raise BadEvent(f"unknown payload_encoding {record.payload_encoding!r}")
    key = kafka_key if kafka_key is not None else _encode(record.original_key)
    return Replay(record.topic, key, original, record)


def _encode(text: str | None) -> bytes | None:
    return text.encode("utf-8") if text is not None else None


@dataclass
class ReplaySummary:
    dlq_topic: str
    group_id: str
    dry_run: bool
    replayed: int = 0
    skipped: int = 0
    remaining: int = 0
    by_error_class: Counter[str] = field(default_factory=Counter)
    by_topic: Counter[str] = field(default_factory=Counter)
    skipped_records: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def taken(self) -> int:
        return self.replayed + self.skipped

    def add_replay(self, where: TopicPartition, offset: int, replay: Replay) -> None:
        self.replayed += 1
        self.by_error_class[replay.record.error_class] += 1
        self.by_topic[replay.topic] += 1
        if self.dry_run and len(self.records) < MAX_LISTED:
            self.records.append(_describe(where, offset, replay))

    def add_skip(self, where: TopicPartition, offset: int, error: BadEvent) -> None:
        self.skipped += 1
        if len(self.skipped_records) < MAX_LISTED:
            entry = {"partition": where.partition, "offset": offset, "reason": str(error)}
            self.skipped_records.append(entry)

    def as_dict(self) -> dict[str, Any]:
        done = "would_replay" if self.dry_run else "replayed"
        report: dict[str, Any] = {
            "dlq_topic": self.dlq_topic,
            "group_id": self.group_id,
            "dry_run": self.dry_run,
            done: self.replayed,
            "skipped": self.skipped,
            "remaining": self.remaining,
            "by_error_class": dict(sorted(self.by_error_class.items())),
            "by_topic": dict(sorted(self.by_topic.items())),
            "skipped_records": self.skipped_records,
        }
        if self.dry_run:
            report["records"] = self.records
        return report


def _describe(where: TopicPartition, offset: int, replay: Replay) -> dict[str, Any]:
    record = replay.record
    return {
        "dlq_partition": where.partition,
        "dlq_offset": offset,
        "topic": replay.topic,
        "key": record.original_key,
        "original_partition": record.partition,
        "original_offset": record.offset,
        "error_class": record.error_class,
        "reason": record.reason,
        "last_seen": record.last_seen.isoformat(),
    }


class DlqReplayer:
    """Reads the assigned DLQ partitions up to ``ends`` and replays (or lists) each record."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer | None,
        summary: ReplaySummary,
        limit: int | None,
    ) -> None:
        self._consumer = consumer
        self._producer = producer  # None: dry run
        self._summary = summary
        self._limit = limit

    async def run(self, ends: dict[TopicPartition, int]) -> None:
        last_progress = time.monotonic()
        while (pending := await self._pending(ends)) and not self._limit_reached():
            batches = await self._consumer.getmany(*pending, timeout_ms=500)
            if any(batches.values()):
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > STALL_SECONDS:
                raise KafkaUnavailable(f"reading {self._summary.dlq_topic} stalled")
            for tp, messages in batches.items():
                await self._take(tp, [m for m in messages if m.offset < ends[tp]])
        for tp, end in ends.items():
            self._summary.remaining += max(0, end - await self._consumer.position(tp))

    async def _pending(self, ends: dict[TopicPartition, int]) -> list[TopicPartition]:
        return [tp for tp, end in ends.items() if await self._consumer.position(tp) < end]

    def _limit_reached(self) -> bool:
        return self._limit is not None and self._summary.taken >= self._limit

    async def _take(self, tp: TopicPartition, messages: list[Any]) -> None:
        """Replay ``messages`` in order (up to the limit), then commit past the last one taken."""
        next_offset: int | None = None
        for message in messages:
            if self._limit_reached():
                self._consumer.seek(tp, message.offset)  # left for the next replay
                break
            await self._take_one(tp, message)
            next_offset = message.offset + 1
        if next_offset is not None and self._producer is not None:
            await kafka_call(self._consumer.commit({tp: next_offset}), "committing the DLQ offset")

    async def _take_one(self, tp: TopicPartition, message: Any) -> None:
        try:
            replay = decode_dead_letter(message.value, message.key)
        except BadEvent as exc:
            self._summary.add_skip(tp, message.offset, exc)
            return
        if self._producer is not None:
            origin = f"{tp.topic}/{tp.partition}/{message.offset}".encode()
            await kafka_call(
                self._producer.send_and_wait(
                    replay.topic,
                    value=replay.value,
                    key=replay.key,
                    headers=[(REPLAY_HEADER, origin)],
                ),
                f"publishing to {replay.topic}",
            )
        self._summary.add_replay(tp, message.offset, replay)


async def run_replay(
    settings: KafkaOptions, *, limit: int | None = None, dry_run: bool = False
) -> ReplaySummary:
    """``enforcer dlq replay``: replay the DLQ topic up to its current end."""
    group_id = f"{settings.group_id}.dlq-replay"
    summary = ReplaySummary(settings.dlq_topic, group_id, dry_run)
    async with AsyncExitStack() as stack:
        consumer = await stack.enter_async_context(
            open_consumer(settings, group_id, "dlq-replay", auto_offset_reset="earliest")
        )
        partitions = await topic_partitions(consumer, settings, settings.dlq_topic)
        if not partitions:
            return summary  # no DLQ topic yet: nothing was ever dead-lettered
        consumer.assign(partitions)
        ends = await kafka_call(consumer.end_offsets(partitions), "reading the DLQ end offsets")
        producer = (
            None
            if dry_run
            else await stack.enter_async_context(open_producer(settings, "dlq-replay"))
        )
        await DlqReplayer(consumer, producer, summary, limit).run(ends)
    return summary
