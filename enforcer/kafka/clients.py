"""aiokafka clients opened and closed in one place, each with the configured TLS/SASL security
(:mod:`enforcer.kafka.security`); ``KafkaError`` becomes ``KafkaUnavailable`` (or
``RecordTooLarge``, which retrying cannot fix) here and nowhere else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

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
from enforcer.kafka.security import check_credentials, client_options

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


async def _start(
    client: AIOKafkaProducer | AIOKafkaConsumer | AIOKafkaAdminClient,
    settings: KafkaSettings,
    options: dict[str, Any],
) -> None:
    """Check the credentials (unless PLAINTEXT), then start; stop the client if that fails."""
    try:
        if settings.security_protocol != "PLAINTEXT":
            await check_credentials(settings, options)
        await kafka_call(client.start(), f"connecting to Kafka at {settings.bootstrap_servers}")
    except BaseException:
        await client.close() if isinstance(client, AIOKafkaAdminClient) else await client.stop()
        raise


@asynccontextmanager
async def open_producer(settings: KafkaSettings, role: str) -> AsyncIterator[AIOKafkaProducer]:
    """Idempotent, ``acks=all``: a send returns only once the broker has the record."""
    options = client_options(settings)
    producer = AIOKafkaProducer(
        **options,
        client_id=f"{settings.client_id}-{role}",
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
    )
    await _start(producer, settings, options)
    try:
        yield producer
    finally:
        await producer.stop()


@asynccontextmanager
async def open_consumer(
    settings: KafkaSettings,
    group_id: str | None,
    role: str,
    *,
    topics: Sequence[str] = (),
    auto_offset_reset: str | None = None,
    max_poll_records: int | None = None,
) -> AsyncIterator[AIOKafkaConsumer]:
    """A group member that commits by hand (offsets are ours to commit, never automatic); with
    ``group_id`` None a stand-alone reader. Naming ``topics`` subscribes and loads their
    partitions at start."""
    options = client_options(settings)
    consumer = AIOKafkaConsumer(
        *topics,
        **options,
        group_id=group_id,
        client_id=f"{settings.client_id}-{role}",
        enable_auto_commit=False,
        auto_offset_reset=auto_offset_reset or settings.auto_offset_reset,
        max_poll_records=max_poll_records or settings.max_poll_records,
        max_poll_interval_ms=settings.max_poll_interval_ms,
    )
    await _start(consumer, settings, options)
    try:
        yield consumer
    finally:
        await consumer.stop()


@asynccontextmanager
async def open_admin(
    settings: KafkaSettings, role: str = "admin"
) -> AsyncIterator[AIOKafkaAdminClient]:
    """An admin client (topic metadata and creation, consumer groups, offsets) with the same
    security as the others."""
    options = client_options(settings)
    admin = AIOKafkaAdminClient(**options, client_id=f"{settings.client_id}-{role}")
    await _start(admin, settings, options)
    try:
        yield admin
    finally:
        await admin.close()


@asynccontextmanager
async def open_reader(settings: KafkaSettings, topic: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer outside any group, subscribed to ``topic``: for metadata and plain reads."""
    async with open_consumer(settings, None, "reader", topics=[topic]) as consumer:
        yield consumer
