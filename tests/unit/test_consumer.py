"""EventConsumer mechanics against an in-memory Kafka (ordering, concurrency, commits, pause)."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from doubles.kafka import TOPIC, MemoryKafka
from doubles.time import settle
from scrape import value

from enforcer.engine.outage import OutageGate
from enforcer.engine.outcome import Dependency
from enforcer.engine.ports import Message
from enforcer.errors import KmsUnavailable
from enforcer.kafka.consumer import EventConsumer


async def turns_of_the_loop(kafka: MemoryKafka, turns: int) -> None:
    """Wait until the consumer has polled ``turns`` more times (a turn: poll, commit, gauges)."""
    for _ in range(turns):
        kafka.polled.clear()
        await asyncio.wait_for(kafka.polled.wait(), timeout=2)


def consumer_for(kafka: MemoryKafka, handler, gate=None, concurrency=4):  # type: ignore[no-untyped-def]
    return EventConsumer(
        kafka,
        handler,
        gate=gate or OutageGate(threshold=1, probe_interval=0.01),
        concurrency=concurrency,
        shutdown_timeout=2,
        drain_idle=0.05,
    )


async def test_same_key_in_order_other_keys_concurrently_and_bounded() -> None:
    kafka = MemoryKafka()
    for i in range(5):
        kafka.produce(0, b"a", str(i).encode())
        kafka.produce(0, b"b", str(i).encode())
    seen: dict[bytes, list[bytes]] = {b"a": [], b"b": []}
    running: list[bytes] = []  # keys of the records being handled
    started: asyncio.Queue[asyncio.Event] = asyncio.Queue()
    peak = 0

    async def handler(message: Message) -> None:
        nonlocal peak
        running.append(message.key or b"")
        peak = max(peak, len(running))
        go = asyncio.Event()
        started.put_nowait(go)
        await go.wait()
        seen[message.key or b""].append(message.value or b"")
        running.remove(message.key or b"")

    task = asyncio.create_task(consumer_for(kafka, handler, concurrency=2).run())
    for _ in range(10):  # the newest record to start finishes first: order cannot be luck
        (await asyncio.wait_for(started.get(), timeout=2)).set()
        await settle()
        assert len(set(running)) == len(running)  # never two records of one key at once
    await asyncio.wait_for(task, timeout=2)
    assert seen[b"a"] == seen[b"b"] == [b"0", b"1", b"2", b"3", b"4"]
    assert peak == 2  # both keys in parallel (how many objects at once is the handler's bound)
    assert kafka.committed == {TopicPartition(TOPIC, 0): 10}


async def test_a_slow_record_holds_back_the_commit_of_later_ones() -> None:
    kafka = MemoryKafka()
    kafka.produce(0, b"slow")
    kafka.produce(0, b"fast")
    release, fast_done = asyncio.Event(), asyncio.Event()
    commits: list[int] = []

    async def handler(message: Message) -> None:
        if message.key == b"slow":
            await release.wait()
        else:
            fast_done.set()

    async def commit(offsets: dict[TopicPartition, int]) -> None:
        commits.extend(offsets.values())
        kafka.committed.update(offsets)

    kafka.commit = commit  # type: ignore[method-assign]
    consumer = consumer_for(kafka, handler)
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(fast_done.wait(), timeout=2)
    await turns_of_the_loop(kafka, 2)  # each turn polls, then commits what it may
    assert commits == []  # "fast" is done, but offset 0 is not: nothing may be committed
    release.set()
    await task
    assert commits == [2]


async def test_open_gate_pauses_every_partition_and_resumes() -> None:
    kafka = MemoryKafka()
    kafka.produce(0, b"k")
    kafka.produce(1, b"j")
    gate = OutageGate(threshold=1, probe_interval=0.01)
    gate.record_failure(Dependency.KMS, KmsUnavailable("down"))
    passed: list[int] = []

    async def handler(message: Message) -> None:
        async with gate.admitted():
            passed.append(message.offset)
            if len(passed) == 1:
                gate.record_success({Dependency.STORAGE})  # the trial did not need the KMS

    consumer = consumer_for(kafka, handler, gate=gate)
    task = asyncio.create_task(consumer.run())
    await turns_of_the_loop(kafka, 3)
    assert kafka.paused_set == kafka.assignment()
    assert not task.done()  # drain mode does not stop during an outage
    gate.record_success({Dependency.KMS})
    await asyncio.wait_for(task, timeout=2)
    assert kafka.paused_set == set()
    assert consumer.handled == 2


async def test_stop_finishes_in_flight_work_and_commits() -> None:
    kafka = MemoryKafka()
    for _ in range(3):
        kafka.produce(0, b"k")

    started, release = asyncio.Event(), asyncio.Event()

    async def handler(message: Message) -> None:
        started.set()
        await release.wait()

    consumer = EventConsumer(kafka, handler, gate=OutageGate(threshold=1, probe_interval=1),
                             concurrency=4, shutdown_timeout=2)  # fmt: skip
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(started.wait(), timeout=2)
    consumer.stop()  # with all three records in flight (one key: one after another)
    release.set()
    await asyncio.wait_for(task, timeout=2)
    assert kafka.committed == {TopicPartition(TOPIC, 0): 3}


async def test_handler_crash_is_fatal_and_its_offset_is_not_committed() -> None:
    kafka = MemoryKafka()
    kafka.produce(0, b"ok")
    kafka.produce(0, b"boom")
    kafka.produce(0, b"after")

    async def handler(message: Message) -> None:
        if message.key == b"boom":
            raise RuntimeError("bug")

    try:
        await consumer_for(kafka, handler).run()
    except RuntimeError:
        pass
    else:
        raise AssertionError("a crashing handler must stop the consumer")
    assert kafka.committed.get(TopicPartition(TOPIC, 0), 0) <= 1


async def test_a_long_outage_with_every_slot_taken_keeps_polling_to_stay_in_the_group() -> None:
    kafka = MemoryKafka()
    for i in range(10):
        kafka.produce(0, f"k{i}".encode())
    gate = OutageGate(threshold=1, probe_interval=60)
    started = asyncio.Event()

    async def handler(message: Message) -> None:
        gate.record_failure(Dependency.STORAGE, KmsUnavailable("down"))
        started.set()
        async with gate.admitted():  # waits: the probe interval is longer than this test
            pass

    consumer = consumer_for(kafka, handler, gate=gate, concurrency=1)
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(started.wait(), timeout=2)
    for _ in range(3):  # room is 0, yet it keeps polling
        kafka.polled.clear()
        await asyncio.wait_for(kafka.polled.wait(), timeout=3)
    assert len(consumer._tasks) == 4 and kafka.paused_set == kafka.assignment()
    consumer.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_slow_work_that_keeps_the_window_full_polls_every_turn_and_fetches_nothing() -> None:
    kafka = MemoryKafka()
    for i in range(20):
        kafka.produce(0, f"k{i}".encode())
    release = asyncio.Event()

    async def handler(message: Message) -> None:
        await release.wait()  # a dependency that hangs without failing: the gate stays closed

    consumer = consumer_for(kafka, handler, concurrency=1)
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(kafka.polled.wait(), timeout=2)  # the first poll fills the window
    await settle()
    assert len(consumer._tasks) == 4  # the window (4 x concurrency) is full
    for _ in range(3):  # a member that stops polling leaves its group: it polls every turn
        kafka.polled.clear()
        await asyncio.wait_for(kafka.polled.wait(), timeout=2)
        assert kafka.paused_set == kafka.assignment()  # ... with every partition paused
    assert len(consumer._tasks) == 4  # so the window does not grow
    release.set()
    await asyncio.wait_for(task, timeout=5)
    assert kafka.committed == {TopicPartition(TOPIC, 0): 20}


async def test_gauges_show_pause_and_lag_while_paused_then_clear() -> None:
    kafka = MemoryKafka()
    for _ in range(3):
        kafka.produce(0, b"k")
    gate = OutageGate(threshold=1, probe_interval=60)
    gate.record_failure(Dependency.KMS, KmsUnavailable("down"))

    async def handler(message: Message) -> None:
        async with gate.admitted():
            pass

    consumer = consumer_for(kafka, handler, gate=gate)
    task = asyncio.create_task(consumer.run())

    lag = {"topic": TOPIC, "partition": "0"}
    for _ in range(50):  # each turn of the loop sets the gauges
        if value("enforcer_paused") == 1 and value("enforcer_consumer_lag", **lag) == 3:
            break
        await turns_of_the_loop(kafka, 1)
    assert value("enforcer_paused") == 1  # all three records wait behind the pause
    assert value("enforcer_consumer_lag", **lag) == 3
    gate.record_success({Dependency.KMS})
    await asyncio.wait_for(task, timeout=2)
    assert value("enforcer_paused") == 0 and value("enforcer_records_in_flight") == 0
