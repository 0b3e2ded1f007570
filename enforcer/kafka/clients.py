"""aiokafka clients opened and closed in one place, each with the configured TLS/SASL security
(:mod:`enforcer.kafka.security`); ``KafkaError`` becomes ``KafkaUnavailable`` (or
``RecordTooLarge``, which retrying cannot fix; ``ProducerStopped``, a producer to replace;
``RangeMoved``, a transactional producer fenced) here and nowhere else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from enforcer.errors import KafkaUnavailable, ProducerStopped, RangeMoved, RecordTooLarge
from enforcer.kafka.options import KafkaOptions
from enforcer.kafka.security import check_credentials, client_options

_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)

T = TypeVar("T")


async def kafka_call(call: Awaitable[T], what: str) -> T:
    """Await one aiokafka call, translating its errors into the enforcer's tree."""
    try:
        return await call
    except _TOO_LARGE as exc:  # retrying cannot shrink the record: not an outage
        raise RecordTooLarge(f"{what}: {type(exc).__name__}: {exc}") from exc
    except (ProducerFenced, InvalidProducerEpoch) as exc:  # a transactional producer replaced
        raise RangeMoved(f"{what}: {type(exc).__name__}: {exc}") from exc
    except OutOfOrderSequenceNumber as exc:  # the sender stopped for good
        raise ProducerStopped(f"{what}: {type(exc).__name__}: {exc}") from exc
    except KafkaError as exc:
        raise KafkaUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


async def _start(
    client: AIOKafkaProducer | AIOKafkaConsumer | AIOKafkaAdminClient,
    kafka: KafkaOptions,
    options: dict[str, Any],
) -> None:
    """Check the credentials (unless PLAINTEXT), then start; stop the client if that fails."""
    try:
        if kafka.security_protocol != "PLAINTEXT":
            await check_credentials(kafka, options)
        await kafka_call(client.start(), f"connecting to Kafka at {kafka.bootstrap_servers}")
    except BaseException:
        await client.close() if isinstance(client, AIOKafkaAdminClient) else await client.stop()
        raise


async def start_producer(
    kafka: KafkaOptions, role: str, *, transactional_id: str | None = None
) -> AIOKafkaProducer:
    """A started idempotent, ``acks=all`` producer: a send is done once the broker has it.
    With a ``transactional_id`` sends go into transactions; starting it aborts (and fences)
    whatever an earlier producer with that id left open."""
    options = client_options(kafka)
    producer = AIOKafkaProducer(
        **options,
        client_id=f"{kafka.client_id}-{role}",
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        transactional_id=transactional_id,
    )
    await _start(producer, kafka, options)
    return producer


@asynccontextmanager
async def open_producer(
    kafka: KafkaOptions, role: str, *, transactional_id: str | None = None
) -> AsyncIterator[AIOKafkaProducer]:
    """:func:`start_producer`, stopped on the way out."""
    producer = await start_producer(kafka, role, transactional_id=transactional_id)
    try:
        yield producer
    finally:
        await producer.stop()


@asynccontextmanager
async def open_consumer(
    kafka: KafkaOptions,
    group_id: str | None,
    role: str,
    *,
    topics: Sequence[str] = (),
    auto_offset_reset: str | None = None,
    max_poll_records: int | None = None,
    read_committed: bool = False,
) -> AsyncIterator[AIOKafkaConsumer]:
    """A group member that commits by hand (offsets are ours to commit, never automatic); with
    ``group_id`` None a stand-alone reader. Naming ``topics`` subscribes and loads their
    partitions at start. A rebalance waits for the members as long as a member may go without
    polling (``max_poll_interval_ms``), as Kafka's Java consumer does: aiokafka's default is
    the session timeout, shorter than a member may need to finish its work on revocation.
    ``read_committed``: records of aborted transactions are never seen, and those of open ones
    only once committed."""
    options = client_options(kafka)
    consumer = AIOKafkaConsumer(
        *topics,
        **options,
        group_id=group_id,
        client_id=f"{kafka.client_id}-{role}",
        enable_auto_commit=False,
        auto_offset_reset=auto_offset_reset or kafka.auto_offset_reset,
        max_poll_records=max_poll_records or kafka.max_poll_records,
        max_poll_interval_ms=kafka.max_poll_interval_ms,
        rebalance_timeout_ms=kafka.max_poll_interval_ms,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
    )
    await _start(consumer, kafka, options)
    try:
        yield consumer
    finally:
        await consumer.stop()


@asynccontextmanager
async def open_admin(
    kafka: KafkaOptions, role: str = "admin"
) -> AsyncIterator[AIOKafkaAdminClient]:
    """An admin client (topic metadata and creation, consumer groups, offsets) with the same
    security as the others."""
    options = client_options(kafka)
    admin = AIOKafkaAdminClient(**options, client_id=f"{kafka.client_id}-{role}")
    await _start(admin, kafka, options)
    try:
        yield admin
    finally:
        await admin.close()


@asynccontextmanager
async def open_reader(kafka: KafkaOptions, topic: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer outside any group, subscribed to ``topic``: for metadata and plain reads."""
    async with open_consumer(kafka, None, "reader", topics=[topic]) as consumer:
        yield consumer
