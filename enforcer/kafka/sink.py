"""The record sink on Kafka: audit and dead-letter records published by an idempotent producer.

The producer uses ``acks=all``; each publish returns only when the broker has the record, so the
consumer may commit the event's offset afterwards (at-least-once). ``send_audit`` hands a record
to the producer and returns its acknowledgement to await later: records sent meanwhile share a
produce request (aiokafka keeps one request in flight per broker and batches the rest).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Generator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaProducer

from enforcer.engine.records import (
    DLQ_KEY_LIMIT,
    AuditRecord,
    DeadLetterRecord,
    encode_record,
    without_payload,
)
from enforcer.errors import RecordTooLarge
from enforcer.kafka.clients import kafka_call, open_producer
from enforcer.kafka.options import KafkaOptions

log = logging.getLogger(__name__)


class KafkaRecordSink:
    def __init__(self, producer: AIOKafkaProducer, kafka: KafkaOptions) -> None:
        self._producer = producer
        self._audit_topic = kafka.audit_topic
        self._dlq_topic = kafka.dlq_topic

    async def publish_audit(self, record: AuditRecord) -> None:
        await self._send(self._audit_topic, encode_record(record), record.kafka_key)

    async def send_audit(self, record: AuditRecord) -> Awaitable[None]:
        topic = self._audit_topic
        future = await kafka_call(
            self._producer.send(topic, value=encode_record(record), key=record.kafka_key),
            f"publishing to {topic}",
        )
        return Acknowledgement(future, f"publishing to {topic}")

    async def publish_dead_letter(self, record: DeadLetterRecord, key: bytes | None) -> None:
        """Publish; a record the broker still refuses for its size goes without its payload
        (its length and SHA-256 stay), so no input can stop the service here."""
        key = key[:DLQ_KEY_LIMIT] if key is not None else None
        try:
            await self._send(self._dlq_topic, encode_record(record), key)
        except RecordTooLarge as exc:
            log.warning("dead-letter record of %s@%s too large (%s); sent without payload",
                        record.topic, record.offset, exc)  # fmt: skip
            smaller = encode_record(without_payload(record))
            await self._send(self._dlq_topic, smaller, key)

    async def _send(self, topic: str, value: bytes, key: bytes | None) -> None:
        await kafka_call(self._producer.send_and_wait(topic, value=value, key=key),
                         f"publishing to {topic}")  # fmt: skip


class Acknowledgement:
    """The broker's acknowledgement of one sent record: awaiting it raises what
    :func:`kafka_call` raises; never awaiting it leaves nothing behind."""

    __slots__ = ("_future", "_what")

    def __init__(self, future: asyncio.Future[Any], what: str) -> None:
        self._future, self._what = future, what

    def __await__(self) -> Generator[Any, None, None]:
        yield from kafka_call(self._future, self._what).__await__()


@asynccontextmanager
async def open_kafka_sink(kafka: KafkaOptions) -> AsyncIterator[KafkaRecordSink]:
    async with open_producer(kafka, "audit") as producer:
        yield KafkaRecordSink(producer, kafka)


class KafkaEventPublisher:
    """Publishes backfill events to the backfill topic (``enforcer scan --enqueue``), where the
    ``enforcer run`` replicas read them like MinIO's own, with spare capacity only."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    async def publish_event(self, key: bytes, value: bytes) -> None:
        await kafka_call(self._producer.send_and_wait(self.topic, value=value, key=key),
                         f"publishing to {self.topic}")  # fmt: skip


@asynccontextmanager
async def open_event_publisher(kafka: KafkaOptions) -> AsyncIterator[KafkaEventPublisher]:
    """A publisher to the backfill topic (``ENFORCER_KAFKA__BACKFILL_TOPIC``)."""
    async with open_producer(kafka, "backfill") as producer:
        yield KafkaEventPublisher(producer, kafka.backfill_topic)
