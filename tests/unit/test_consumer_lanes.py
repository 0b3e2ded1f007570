"""EventConsumer against an in-memory Kafka: starting positions committed on assignment, the
backfill lane behind live work, and revocations that never outlast the rebalance."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from doubles.kafka import TOPIC, MemoryKafka
from doubles.time import settle

from enforcer.engine.outage import OutageGate
from enforcer.engine.ports import Message
from enforcer.kafka.consumer import EventConsumer, Handler
from enforcer.kafka.lanes import BackfillLane

BACKFILL = "backfill"


def consumer_for(
    kafka: MemoryKafka,
    handler: Handler,
    *,
    concurrency: int = 2,
    lane: BackfillLane | None = None,
    rebalance_wait: float | None = None,
) -> EventConsumer:
    return EventConsumer(
        kafka,
        handler,
        gate=OutageGate(threshold=1, probe_interval=0.01),
        concurrency=concurrency,
        shutdown_timeout=2,
        drain_idle=0.05,
        backfill=lane,
        rebalance_wait=rebalance_wait,
    )


async def test_idle_partitions_get_their_starting_position_committed_at_assignment() -> None:
    kafka = MemoryKafka()
    for _ in range(3):
        kafka.produce(0, b"old")  # history before the group's first start
        kafka.produce(1, b"old")
    idle, busy = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    kafka.positions.update({idle: 3, busy: 3})  # auto_offset_reset=latest: start at the end
    kafka.produce(1, b"new")

    async def handler(message: Message) -> None:
        pass

    consumer = consumer_for(kafka, handler)
    consumer.assigned(kafka.assignment())  # what the rebalance listener does
    await consumer.run()
    # The idle partition has a committed offset too: a restart starts there, not at the end.
    assert kafka.committed == {idle: 3, busy: 4}


async def test_a_failed_commit_of_the_starting_positions_is_tried_again() -> None:
    kafka = MemoryKafka()
    kafka.produce(0, b"k")
    tp = TopicPartition(TOPIC, 0)
    kafka.positions[tp] = 1
    attempts: list[dict[TopicPartition, int]] = []

    async def commit(offsets: dict[TopicPartition, int]) -> None:
        attempts.append(dict(offsets))
        if len(attempts) == 1:
            raise KafkaConnectionError("mid-rebalance")
        kafka.committed.update(offsets)

    kafka.commit = commit  # type: ignore[method-assign]

    async def handler(message: Message) -> None:
        pass

    consumer = consumer_for(kafka, handler)
    consumer.assigned({tp})
    await consumer.run()
    assert attempts[:2] == [{tp: 1}, {tp: 1}] and kafka.committed == {tp: 1}


async def test_backfill_waits_while_the_live_lag_is_above_the_threshold() -> None:
    kafka = MemoryKafka()
    for i in range(40):
        kafka.produce(0, f"live/{i}".encode())
    for i in range(10):
        kafka.produce(0, f"backfill/{i}".encode(), topic=BACKFILL)
    order: list[str] = []

    async def handler(message: Message) -> None:
        await asyncio.sleep(0)  # a turn of the loop: work that is not done at once
        order.append(message.topic)

    lane = BackfillLane(BACKFILL, max_live_lag=5)
    consumer = consumer_for(kafka, handler, concurrency=2, lane=lane)
    await consumer.run()
    first_backfill = order.index(BACKFILL)
    window = 4 * 2
    # Live first: the lane opened only once at most 5 live records were left unfetched and
    # at most a window of them were in flight.
    assert order[:first_backfill].count(TOPIC) >= 40 - 5 - window
    assert order.count(BACKFILL) == 10
    assert kafka.committed[TopicPartition(BACKFILL, 0)] == 10


async def test_backfill_fetched_by_the_poll_that_joins_the_group_waits_for_the_plan() -> None:
    kafka = MemoryKafka(joins_on_first_poll=True)
    for i in range(4):  # (the double fetches the partitions in the order they were produced to)
        kafka.produce(0, f"backfill/{i}".encode(), topic=BACKFILL)
    for i in range(20):
        kafka.produce(0, f"live/{i}".encode())
    order: list[str] = []

    async def handler(message: Message) -> None:
        order.append(message.topic)

    consumer = consumer_for(kafka, handler, concurrency=2, lane=BackfillLane(BACKFILL, 5))
    kafka.listener = consumer.rebalance_listener()
    await consumer.run()
    # The first poll named no partition (nothing was assigned yet), and the lane's partitions
    # were paused as they were assigned; the lane waited for the live lag like any other turn.
    assert order[0] == TOPIC and order.index(BACKFILL) >= 20 - 5 - 4 * 2, order
    assert order.count(BACKFILL) == 4 and kafka.committed[TopicPartition(BACKFILL, 0)] == 4


async def test_backfill_takes_only_the_slots_live_work_leaves_idle() -> None:
    kafka = MemoryKafka()
    kafka.produce(0, b"live/slow")
    for i in range(30):
        kafka.produce(0, f"backfill/{i}".encode(), topic=BACKFILL)
    release = asyncio.Event()
    running = {TOPIC: 0, BACKFILL: 0}
    peak_backfill_beside_live = 0

    async def handler(message: Message) -> None:
        nonlocal peak_backfill_beside_live
        running[message.topic] += 1
        try:
            if message.topic == TOPIC:
                await release.wait()
            else:
                await settle(3)  # a few turns of the loop, beside the held live record
            if running[TOPIC]:
                peak_backfill_beside_live = max(peak_backfill_beside_live, running[BACKFILL])
        finally:
            running[message.topic] -= 1

    lane = BackfillLane(BACKFILL, max_live_lag=100)
    consumer = consumer_for(kafka, handler, concurrency=4, lane=lane)
    task = asyncio.create_task(consumer.run())
    while kafka.positions[TopicPartition(BACKFILL, 0)] < 30:  # the lane moves on meanwhile
        kafka.polled.clear()
        await asyncio.wait_for(kafka.polled.wait(), timeout=2)
    release.set()
    await asyncio.wait_for(task, timeout=5)
    assert 0 < peak_backfill_beside_live <= 3  # four slots, one held by the live record


async def test_one_object_s_live_and_backfill_events_never_run_at_once() -> None:
    kafka = MemoryKafka()
    kafka.produce(0, b"b/k", b"backfill", topic=BACKFILL)
    kafka.produce(0, b"b/k", b"live")
    for i in range(5):
        kafka.produce(0, f"b/other{i}".encode(), b"backfill", topic=BACKFILL)
    running: set[bytes] = set()
    overlaps: list[bytes] = []
    handled: list[bytes] = []

    async def handler(message: Message) -> None:
        key = message.key or b""
        if key in running:
            overlaps.append(key)
        running.add(key)
        await settle()  # long enough for any other record of the key to start, if it could
        running.discard(key)
        handled.append(message.value or b"")

    lane = BackfillLane(BACKFILL, max_live_lag=100)
    await consumer_for(kafka, handler, concurrency=4, lane=lane).run()
    assert overlaps == [] and len(handled) == 7


async def test_a_revocation_abandons_work_that_outlasts_the_rebalance_wait() -> None:
    kafka = MemoryKafka()
    kafka.produce(0, b"stuck")
    kafka.produce(0, b"quick")
    tp = TopicPartition(TOPIC, 0)
    started = asyncio.Event()

    async def handler(message: Message) -> None:
        if message.key == b"stuck":
            started.set()
            await asyncio.Event().wait()  # e.g. waiting at a closed outage gate

    consumer = consumer_for(kafka, handler, rebalance_wait=0.1)
    consumer._drain_idle = None
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(started.wait(), timeout=2)
    # The group waits for this member as long as a rebalance may take: never longer.
    await asyncio.wait_for(consumer.finish_partitions({tp}), timeout=1)
    assert consumer._tasks == {}
    assert kafka.committed.get(tp, 0) == 0  # the stuck record is its next owner's
    consumer.stop()
    await asyncio.wait_for(task, timeout=2)


async def test_a_range_backfill_starts_objects_only_while_live_work_leaves_room() -> None:
    kafka = MemoryKafka()
    for i in range(4):
        kafka.produce(0, f"live/{i}".encode())
    release = asyncio.Event()

    async def handler(message: Message) -> None:
        await release.wait()

    lane = BackfillLane(BACKFILL, max_live_lag=2)
    consumer = consumer_for(kafka, handler, concurrency=4, lane=lane)
    task = asyncio.create_task(consumer.run())
    admitted = asyncio.create_task(consumer.admit())
    for _ in range(3):  # first 4 live records unfetched (above the threshold), then in all slots
        kafka.polled.clear()
        await asyncio.wait_for(kafka.polled.wait(), timeout=2)
        assert not admitted.done()
    release.set()
    await asyncio.wait_for(admitted, timeout=2)
    await asyncio.wait_for(task, timeout=5)
    await asyncio.wait_for(consumer.admit(), timeout=1)  # the loop ended: nothing live comes first
