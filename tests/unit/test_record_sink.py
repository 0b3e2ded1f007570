"""The Kafka record sink replaces a producer whose sender stopped for good (a broker that lost
the idempotent producer's sequence numbers), so a broker restart cannot stop the service."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber

from enforcer.core.verdict import Action
from enforcer.engine.records import AuditRecord
from enforcer.errors import KafkaUnavailable
from enforcer.kafka.options import KafkaOptions
from enforcer.kafka.sink import KafkaRecordSink

RECORD = AuditRecord(event_id="e", bucket="b", key="k", action=Action.NONE, duration_ms=0,
                     mode="enforce", timestamp=datetime.now(UTC),
                     enforcer_version="0")  # fmt: skip


class Producer:
    """The slice of AIOKafkaProducer the sink uses; fails every send with ``error``."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error, self.stopped = error, False
        self.sent: list[tuple[str, bytes | None]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.error is not None:
            future.set_exception(self.error)
        else:
            self.sent.append((topic, key))
            future.set_result(None)
        return future

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None) -> None:
        await (await self.send(topic, value, key))

    async def stop(self) -> None:
        self.stopped = True


async def sink_with(first: Producer) -> tuple[KafkaRecordSink, list[Producer]]:
    started: list[Producer] = []

    async def start(kafka: KafkaOptions, role: str) -> Any:
        started.append(Producer())
        return started[-1]

    return KafkaRecordSink(first, KafkaOptions(), start=start), started


async def test_a_producer_stopped_for_good_is_replaced_and_the_next_attempt_goes_through() -> None:
    dead = Producer(OutOfOrderSequenceNumber())
    sink, started = await sink_with(dead)
    with pytest.raises(KafkaUnavailable, match="OutOfOrderSequenceNumber"):
        await sink.publish_audit(RECORD)
    assert dead.stopped and len(started) == 1
    await sink.publish_audit(RECORD)  # the retry policy's next attempt
    assert started[0].sent == [("sse-enforcer.audit", b"b/k")]


async def test_an_unacknowledged_send_replaces_the_producer_too() -> None:
    dead = Producer(OutOfOrderSequenceNumber())
    sink, started = await sink_with(dead)
    acknowledged = await sink.send_audit(RECORD)
    with pytest.raises(KafkaUnavailable):
        await acknowledged
    assert dead.stopped and len(started) == 1


async def test_a_broker_that_is_away_keeps_the_producer() -> None:
    away = Producer(KafkaConnectionError())
    sink, started = await sink_with(away)
    with pytest.raises(KafkaUnavailable):
        await sink.publish_audit(RECORD)
    assert not away.stopped and started == []
