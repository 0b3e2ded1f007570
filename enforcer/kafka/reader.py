"""Reading a whole topic once, from its beginning up to the end it had when the read started,
without joining or committing for any consumer group (``enforcer report`` on the audit topic).

Partitions are assigned by hand and no group id is used, so the read leaves no trace on the
broker and never disturbs the service's group. Records appended while the read runs are left for
the next read, so it always ends. It reads committed records only (``read_committed``): the
final audit records of a backfill range whose transaction was aborted (its replica died) are
never counted; the range's next owner publishes them again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition

from enforcer.errors import KafkaUnavailable
from enforcer.kafka.clients import kafka_call, open_consumer, open_reader
from enforcer.kafka.options import KafkaOptions

#: Give up when the topic yields nothing for this long while records are still expected.
STALL_SECONDS = 30.0


async def read_to_end(kafka: KafkaOptions, topic: str) -> AsyncIterator[bytes | None]:
    """The values of ``topic``'s records, partition by partition batches, up to the start-time
    end. A topic that does not exist yields nothing (and is not created)."""
    async with open_consumer(
        kafka,
        None,
        "report",
        auto_offset_reset="earliest",
        max_poll_records=5000,
        read_committed=True,
    ) as consumer:
        partitions = await topic_partitions(consumer, kafka, topic)
        if not partitions:
            return
        consumer.assign(partitions)
        await kafka_call(consumer.seek_to_beginning(*partitions), f"seeking {topic}")
        ends = await kafka_call(consumer.end_offsets(partitions), f"end offsets of {topic}")
        async for value in _until(consumer, ends):
            yield value


async def topic_partitions(
    consumer: AIOKafkaConsumer, kafka: KafkaOptions, topic: str
) -> list[TopicPartition]:
    """``topic``'s partitions; none if it does not exist (and it is not created).

    Listing all topics never auto-creates one; only then does a throw-away consumer that names
    the topic load its partitions (naming a missing topic could create it on the broker).
    """
    if topic not in await kafka_call(consumer.topics(), "listing topics"):
        return []
    async with open_reader(kafka, topic) as reader:
        found = reader.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(found)]


async def _until(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]
) -> AsyncIterator[bytes | None]:
    remaining = {tp for tp in ends if await consumer.position(tp) < ends[tp]}
    last_progress = time.monotonic()
    while remaining:
        batch = await kafka_call(consumer.getmany(*remaining, timeout_ms=1000), "reading")
        for tp, messages in batch.items():
            for message in messages:
                if message.offset < ends[tp]:
                    yield message.value
            last_progress = time.monotonic()
        remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        if remaining and time.monotonic() - last_progress > STALL_SECONDS:
            raise KafkaUnavailable(f"no records for {STALL_SECONDS:.0f}s while reading to the end")
