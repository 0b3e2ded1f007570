"""An in-memory Kafka consumer: the slice of AIOKafkaConsumer the EventConsumer uses."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

TOPIC = "events"


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class MemoryKafka:
    """The slice of AIOKafkaConsumer that EventConsumer uses, over in-memory partitions."""

    logs: dict[TopicPartition, list[Record]] = field(default_factory=dict)
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    paused_set: set[TopicPartition] = field(default_factory=set)
    pause_calls: int = 0
    polled: asyncio.Event = field(default_factory=asyncio.Event)
    #: The group is joined inside the first poll (as aiokafka does): until then nothing is
    #: assigned, and that poll, naming no partition, fetches from every one — after it told
    #: ``listener`` (a ConsumerRebalanceListener) what was assigned.
    joins_on_first_poll: bool = False
    listener: Any = None

    def produce(
        self, partition: int, key: bytes | None, value: bytes = b"", topic: str = TOPIC
    ) -> None:
        tp = TopicPartition(topic, partition)
        log = self.logs.setdefault(tp, [])
        log.append(Record(topic, partition, len(log), key, value))
        self.positions.setdefault(tp, 0)

    def assignment(self) -> set[TopicPartition]:
        return set() if self.joins_on_first_poll else set(self.positions)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_set)

    def pause(self, *tps: TopicPartition) -> None:
        self.pause_calls += 1
        self.paused_set.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_set.difference_update(tps)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[Record]]:
        """Like aiokafka: from ``partitions`` (all assigned when none named), not paused ones."""
        self.polled.set()
        if self.joins_on_first_poll:
            self.joins_on_first_poll = False
            if self.listener is not None:
                await self.listener.on_partitions_assigned(set(self.positions))
        out: dict[TopicPartition, list[Record]] = {}
        for tp, position in self.positions.items():
            if tp in self.paused_set or (partitions and tp not in partitions):
                continue
            records = self.logs[tp][position : position + max_records]
            if records:
                out[tp] = records
                self.positions[tp] += len(records)
                max_records -= len(records)
        if not out:
            await asyncio.sleep(timeout_ms / 1000)
        return out

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.update(offsets)

    def highwater(self, tp: TopicPartition) -> int | None:
        """The log end as the last fetch reported it: here, always the current one."""
        return len(self.logs[tp])

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.logs[tp]) for tp in tps}

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]
