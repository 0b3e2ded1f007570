"""enforcer.forward.forwarder on in-memory fakes of its two ports: a message is deleted only
after Kafka acknowledged what it carries; while Kafka is down the batch in hand is held and
nothing more is received; a stop ends the long poll at once and keeps unacknowledged messages
on the queue."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from enforcer.errors import KafkaUnavailable, RecordTooLarge
from enforcer.forward.forwarder import Forwarder, QueueMessage
from enforcer.forward.messages import KafkaRecord


def s3_body(key: str, bucket: str = "b") -> str:
    record = {"eventName": "ObjectCreated:Put",
              "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}  # fmt: skip
    return json.dumps({"Records": [record]})


@dataclass
class MemoryQueue:
    """SQS in memory: received messages stay until deleted; ``log`` records every call."""

    waiting: list[QueueMessage] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    receives: int = 0
    block_when_empty: bool = False

    def put(self, *bodies: str) -> None:
        for body in bodies:
            n = len(self.waiting) + len(self.deleted)
            self.waiting.append(QueueMessage(f"m{n}", f"r{n}", body))

    async def receive(self, max_messages: int, wait_seconds: int) -> list[QueueMessage]:
        self.receives += 1
        taken, self.waiting = self.waiting[:max_messages], self.waiting[max_messages:]
        if not taken and self.block_when_empty:
            await asyncio.Event().wait()  # a long poll that never ends by itself
        return taken

    async def delete(self, messages: Sequence[QueueMessage]) -> None:
        self.log += [f"delete {m.message_id}" for m in messages]
        self.deleted += [m.message_id for m in messages]


@dataclass
class FlakyKafka:
    """Acknowledges records, after failing the first ``outage`` attempts (KafkaUnavailable);
    refuses values containing ``too_large`` for good."""

    log: list[str]
    outage: int = 0
    too_large: bytes = b"\x00never"
    acknowledged: list[KafkaRecord] = field(default_factory=list)
    attempts: int = 0
    on_failure: asyncio.Event = field(default_factory=asyncio.Event)
    #: Called before each attempt (the test reads the forwarder's readiness there).
    before: Callable[[], None] = lambda: None

    async def publish(self, record: KafkaRecord) -> None:
        self.before()
        self.attempts += 1
        if self.too_large in record.value:
            raise RecordTooLarge("MessageSizeTooLargeError")
        if self.outage > 0:
            self.outage -= 1
            self.on_failure.set()
            await asyncio.sleep(0)
            raise KafkaUnavailable("KafkaConnectionError: no broker")
        self.acknowledged.append(record)
        self.log.append(f"ack {record.key!r}")


def forwarder(queue: MemoryQueue, kafka: FlakyKafka, **options: object) -> Forwarder:
    return Forwarder(queue, kafka, batch_size=10, wait_time=0, drain=True, **options)  # type: ignore[arg-type]


async def test_each_message_is_deleted_after_its_records_were_acknowledged() -> None:
    queue = MemoryQueue()
    kafka = FlakyKafka(queue.log)
    queue.put(s3_body("a"), s3_body("b"))
    summary = await forwarder(queue, kafka).run()
    assert [r.key for r in kafka.acknowledged] == [b"b/a", b"b/b"]
    assert queue.log == ["ack b'b/a'", "ack b'b/b'", "delete m0", "delete m1"]
    assert (summary.received, summary.forwarded, summary.records, summary.kept) == (2, 2, 2, 0)


async def test_test_events_are_deleted_and_unreadable_bodies_produced_as_is() -> None:
    queue = MemoryQueue()
    kafka = FlakyKafka(queue.log)
    queue.put('{"Service":"Amazon S3","Event":"s3:TestEvent"}', "garbage")
    summary = await forwarder(queue, kafka).run()
    assert kafka.acknowledged == [KafkaRecord(None, b"garbage")]
    assert sorted(queue.deleted) == ["m0", "m1"]
    assert (summary.skipped, summary.unreadable, summary.forwarded) == (1, 1, 0)


async def test_while_kafka_is_down_the_batch_is_held_and_nothing_more_received() -> None:
    queue = MemoryQueue()
    kafka = FlakyKafka(queue.log, outage=5)
    queue.put(s3_body("a"))
    run = forwarder(queue, kafka)
    readiness: list[tuple[bool, str]] = []
    kafka.before = lambda: readiness.append(run.readiness())
    summary = await run.run()
    assert kafka.attempts == 6  # five failures, then the acknowledgement
    assert queue.receives == 2  # the batch, then the empty receive that ends the drain
    assert queue.deleted == ["m0"] and summary.forwarded == 1
    assert readiness[0] == (True, "forwarding")
    assert all(not ready and "Kafka unavailable" in why for ready, why in readiness[1:])
    assert run.readiness() == (True, "forwarding")


async def test_a_stop_while_holding_keeps_the_message_on_the_queue() -> None:
    queue = MemoryQueue()
    kafka = FlakyKafka(queue.log, outage=10**9)
    queue.put(s3_body("a"))
    run = forwarder(queue, kafka)
    task = asyncio.ensure_future(run.run())
    await kafka.on_failure.wait()
    run.stop()
    summary = await asyncio.wait_for(task, 5)
    assert queue.deleted == [] and summary.kept == 1 and summary.forwarded == 0


async def test_a_record_kafka_refuses_for_good_leaves_only_its_message_on_the_queue() -> None:
    queue = MemoryQueue()
    kafka = FlakyKafka(queue.log, too_large=b"huge")
    queue.put(s3_body("huge"), s3_body("small"))
    summary = await forwarder(queue, kafka).run()
    assert queue.deleted == ["m1"]
    assert (summary.kept, summary.forwarded) == (1, 1)


async def test_a_stop_ends_the_long_poll_at_once() -> None:
    queue = MemoryQueue(block_when_empty=True)
    run = Forwarder(queue, FlakyKafka(queue.log), wait_time=20)
    task = asyncio.ensure_future(run.run())
    await asyncio.sleep(0.05)
    run.stop()
    summary = await asyncio.wait_for(task, 5)
    assert summary.received == 0


async def test_a_batch_still_unacknowledged_at_the_shutdown_bound_is_abandoned() -> None:
    queue = MemoryQueue()
    queue.put(s3_body("a"))

    class Hanging:
        async def publish(self, record: KafkaRecord) -> None:
            await asyncio.Event().wait()

    run = Forwarder(queue, Hanging(), shutdown_timeout=0.1, drain=True)
    task = asyncio.ensure_future(run.run())
    await asyncio.sleep(0.05)
    run.stop()
    await asyncio.wait_for(task, 5)
    assert queue.deleted == []


@pytest.mark.parametrize("batch_size", [1, 3])
async def test_batches_of_the_configured_size(batch_size: int) -> None:
    queue = MemoryQueue()
    kafka = FlakyKafka(queue.log)
    queue.put(*(s3_body(str(n)) for n in range(7)))
    summary = await Forwarder(queue, kafka, batch_size=batch_size, wait_time=0, drain=True).run()
    assert summary.forwarded == 7
    assert queue.receives == -(-7 // batch_size) + 1
