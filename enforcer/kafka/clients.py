"""aiokafka clients opened and closed in one place; ``KafkaError`` becomes ``KafkaUnavailable``
(or ``RecordTooLarge``, which retrying cannot fix) here and nowhere else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from enforcer.config import KafkaSettings
from enforcer.errors import KafkaUnavailable, RecordTooLarge

_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)

T = TypeVar("T")


async def kafka_call(call: Awaitable[T], what: str) -> T:
    """Await one aiokafka call, translating its errors into the enforcer's tree."""
    try:
        return await call
    except _TOO_LARGE as exc:  # retrying cannot shrink the record: not an outage
        raise RecordTooLarge(f"{what}: {type(exc).__name__}: {exc}") from exc
    except KafkaError as exc:
        raise KafkaUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


@asynccontextmanager
async def open_producer(settings: KafkaSettings, role: str) -> AsyncIterator[AIOKafkaProducer]:
    """Idempotent, ``acks=all``: a send returns only once the broker has the record."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}-{role}",
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
    )
    await kafka_call(producer.start(), f"connecting to Kafka at {settings.bootstrap_servers}")
    try:
        yield producer
    finally:
        await producer.stop()


@asynccontextmanager
async def open_consumer(
    settings: KafkaSettings, group_id: str, role: str, *, auto_offset_reset: str | None = None
) -> AsyncIterator[AIOKafkaConsumer]:
    """A group member that commits by hand (offsets are ours to commit, never automatic)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group_id,
        client_id=f"{settings.client_id}-{role}",
        enable_auto_commit=False,
        auto_offset_reset=auto_offset_reset or settings.auto_offset_reset,
        max_poll_records=settings.max_poll_records,
    )
    await kafka_call(consumer.start(), f"connecting to Kafka at {settings.bootstrap_servers}")
    try:
        yield consumer
    finally:
        await consumer.stop()


@asynccontextmanager
async def open_admin(settings: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    """An admin client (topic metadata and creation)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id=f"{settings.client_id}-admin"
    )
    await kafka_call(admin.start(), f"connecting to Kafka at {settings.bootstrap_servers}")
    try:
        yield admin
    finally:
        await admin.close()


@asynccontextmanager
async def open_reader(settings: KafkaSettings, topic: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer outside any group, subscribed to ``topic``: for metadata and plain reads."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}-reader",
        group_id=None,
        enable_auto_commit=False,
    )
    await kafka_call(consumer.start(), f"reading {topic} at {settings.bootstrap_servers}")
    try:
        yield consumer
    finally:
        await consumer.stop()
