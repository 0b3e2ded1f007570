"""Kafka offset chores that are not part of consuming: starting a new group at the topic's end."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition


async def commit_group_at_end(bootstrap: str, topic: str, group_id: str) -> dict[int, int]:
    """Give ``group_id`` committed offsets at the current end of ``topic``; return them.

    A group that has none starts from the earliest retained event; this lets a demo,
    a test or a deliberate fresh start skip the history instead.
    """
    probe = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None)
    await probe.start()  # naming the topic loads its metadata
    try:
        numbers = sorted(probe.partitions_for_topic(topic) or ())
        partitions = [TopicPartition(topic, n) for n in numbers]
        ends = await probe.end_offsets(partitions)
    finally:
        await probe.stop()
    committer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await committer.start()
    try:
        committer.assign(partitions)
        await committer.commit(ends)
    finally:
        await committer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}
