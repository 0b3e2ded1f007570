"""The record sink on Kafka: audit and dead-letter records published by an idempotent producer.

The producer uses ``acks=all``; each publish returns only when the broker has the record, so the
consumer may commit the event's offset afterwards (at-least-once). ``send_audit`` hands a record
to the producer and returns its acknowledgement to await later: records sent meanwhile share a
produce request (aiokafka keeps one request in flight per broker and batches the rest).

A broker that restarted can answer an idempotent producer ``OutOfOrderSequenceNumber`` (it lost
the producer's sequence numbers); aiokafka's sender then stops for good, and every later send
would fail. The sink replaces such a producer with a new one (a new producer id) and lets the
retry policy send the record again: at worst a record appears twice, never not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from enforcer.engine.records import (
    DLQ_KEY_LIMIT,
    AuditRecord,
    DeadLetterRecord,
    encode_record,
    without_payload,
)
from enforcer.errors import ProducerStopped, RecordTooLarge
from enforcer.kafka.clients import kafka_call, open_producer, start_producer
from enforcer.kafka.options import KafkaOptions

log = logging.getLogger(__name__)

T = TypeVar("T")


#: Starts a producer for these options and role (:func:`start_producer`).
StartProducer = Callable[[KafkaOptions, str], Awaitable[AIOKafkaProducer]]


class KafkaRecordSink:
    def __init__(
        self, producer: AIOKafkaProducer, kafka: KafkaOptions, start: StartProducer = start_producer
    ) -> None:
        self._producer = producer
        self._kafka = kafka
        self._start = start
        self._audit_topic = kafka.audit_topic
        self._dlq_topic = kafka.dlq_topic
        self._renewing = asyncio.Lock()

    async def publish_audit(self, record: AuditRecord) -> None:
        await self._send(self._audit_topic, encode_record(record), record.kafka_key)

    async def send_audit(self, record: AuditRecord) -> Awaitable[None]:
        topic, producer = self._audit_topic, self._producer
        future = await self._call(
            producer,
            producer.send(topic, value=encode_record(record), key=record.kafka_key),
            f"publishing to {topic}",
        )
        return Acknowledgement(self._call(producer, future, f"publishing to {topic}"))

    async def aclose(self) -> None:
        await self._producer.stop()

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
        producer = self._producer
        await self._call(producer, producer.send_and_wait(topic, value=value, key=key),
                         f"publishing to {topic}")  # fmt: skip

    async def _call(self, producer: AIOKafkaProducer, call: Awaitable[T], what: str) -> T:
        """:func:`kafka_call`; an error that stopped ``producer`` for good replaces it first."""
        try:
            return await kafka_call(call, what)
        except ProducerStopped as exc:
            await self._renew(producer, exc)
            raise

    async def _renew(self, dead: AIOKafkaProducer, exc: ProducerStopped) -> None:
        async with self._renewing:
            if dead is not self._producer:  # another call renewed it already
                return
            log.warning("the audit producer stopped for good (%s); starting a new one", exc)
            self._producer = await self._start(self._kafka, "audit")
        with contextlib.suppress(KafkaError):
            await dead.stop()


class Acknowledgement:
    """The broker's acknowledgement of one sent record: awaiting it raises what
    :func:`kafka_call` raises; never awaiting it leaves nothing behind."""

    __slots__ = ("_acknowledged",)

    def __init__(self, acknowledged: Coroutine[Any, Any, Any]) -> None:
        self._acknowledged = acknowledged

    def __await__(self) -> Generator[Any, None, None]:
        yield from self._acknowledged.__await__()

    def __del__(self) -> None:
        self._acknowledged.close()  # never awaited: no "coroutine was never awaited" warning


@asynccontextmanager
async def open_kafka_sink(kafka: KafkaOptions) -> AsyncIterator[KafkaRecordSink]:
    sink = KafkaRecordSink(await start_producer(kafka, "audit"), kafka)
    try:
        yield sink
    finally:
        await sink.aclose()


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
