"""The Kafka loop: fetch, fan out with bounded concurrency, keep per-object order, commit safely.

Only the mechanics live here; what happens to a record is the engine's business: each one is
handed over as an :class:`enforcer.engine.ports.Message` to the handler it was given (the
engine's :class:`~enforcer.engine.handler.RecordHandler`). Guarantees:

* records with the same Kafka key (``bucket/object``) run one after another, in offset order;
  others run concurrently: at most ``4 x concurrency`` records are in flight (the window), and
  the handler bounds how many objects are worked on at once;
* an offset is committed only when every record before it in its partition is done (the
  contiguous done prefix), so a crash replays, never skips (at-least-once); while records are in
  flight at most once a second, at once when idle;
* while the outage gate is open (KMS or storage down) all partitions are paused, but the loop
  keeps polling so the member stays in its group;
* ``stop()`` (SIGTERM) stops fetching, lets in-flight work finish within a bound, commits, returns.

Each turn of the loop also sets the gauges ``enforcer.paused`` and ``enforcer.records.in_flight``,
and every few seconds ``enforcer.consumer.lag`` per assigned partition (end offset minus committed
offset, read from the broker, so it grows during a pause too).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord

from enforcer.engine.ports import ConsumptionGate, Message
from enforcer.telemetry import CONSUMER_LAG, IN_FLIGHT, PAUSED

log = logging.getLogger(__name__)

#: Seconds between two readings of the partitions' end offsets for the lag gauge.
LAG_INTERVAL = 5.0
#: Seconds without a poll after which a member whose window is full polls anyway (for at most
#: one record), well inside Kafka's max.poll.interval (5 min).
POLL_KEEPALIVE = 60.0
#: While records are in flight, offsets are committed at most this often (a commit is a broker
#: round trip; per record it costs as much CPU as the record). When idle, at once.
COMMIT_INTERVAL = 1.0


Handler = Callable[[Message], Awaitable[None]]


class OffsetTracker:
    """Per partition: offsets in flight and the next offset after everything fetched (pure)."""

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, set[int]] = {}
        self._fetched: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        # The first offset fetched is where the group already stands: nothing to commit yet.
        self._committed.setdefault(tp, offset)
        self._pending.setdefault(tp, set()).add(offset)
        self._fetched[tp] = max(self._fetched.get(tp, 0), offset + 1)

    def finished(self, tp: TopicPartition, offset: int) -> None:
        self._pending.get(tp, set()).discard(offset)

    def committable(self) -> dict[TopicPartition, int]:
        """Offsets to commit now: the lowest still pending, else all fetched; only new ones."""
        offsets = {}
        for tp, fetched in self._fetched.items():
            pending = self._pending.get(tp)
            offset = min(pending) if pending else fetched
            if offset > self._committed.get(tp, -1):
                offsets[tp] = offset
        return offsets

    def committed(self, tp: TopicPartition) -> int | None:
        """The offset last committed (or found committed) for ``tp``, if known."""
        return self._committed.get(tp)

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._pending.pop(tp, None)
            self._fetched.pop(tp, None)
            self._committed.pop(tp, None)

    def in_flight(self, partitions: set[TopicPartition] | None = None) -> int:
        return sum(
            len(v) for tp, v in self._pending.items() if partitions is None or tp in partitions
        )


class EventConsumer:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        handler: Handler,
        *,
        gate: ConsumptionGate,
        concurrency: int,
        shutdown_timeout: float,
        drain_idle: float | None = None,
    ) -> None:
        self._consumer = consumer
        self._handler = handler
        self._gate = gate
        self._max_in_flight = concurrency * 4
        self._shutdown_timeout = shutdown_timeout
        self._drain_idle = drain_idle
        self._offsets = OffsetTracker()
        self._tasks: set[asyncio.Task[None]] = set()
        self._tails: dict[bytes, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._fatal: BaseException | None = None
        self._lag_due = 0.0
        self._commit_due = 0.0
        self._poll_due = 0.0
        self.handled = 0
        #: True once the group has given this member an assignment (possibly empty: more
        #: members than partitions). Readiness waits for it.
        self.joined = False

    def stop(self) -> None:
        self._stopping.set()

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _Rebalance(self)

    async def run(self) -> None:
        idle_since: float | None = None
        try:
            while not self._stopping.is_set() and self._fatal is None:
                self._apply_gate()
                fetched = await self._fetch()
                if not self._tasks or time.monotonic() >= self._commit_due:
                    await self._commit()
                await self._observe()
                if self._drain_idle is None:
                    continue
                idle_since = await self._drain_check(fetched, idle_since)
                if idle_since is not None and time.monotonic() - idle_since >= self._drain_idle:
                    break
        finally:
            await self._shutdown()
        if self._fatal is not None:
            raise self._fatal

    async def _fetch(self) -> int:
        half = self._max_in_flight // 2
        if len(self._tasks) > half:  # refill in batches, not one record per turn
            await asyncio.wait(self._tasks, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            full = len(self._tasks) > half
            if self._gate.is_open or (full and time.monotonic() >= self._poll_due):
                # A member that does not poll for max.poll.interval (5 min) leaves its group:
                # while paused (every partition paused, so this returns nothing), or while slow
                # work keeps the window full, poll for at most one record.
                self._apply_gate()
                return await self._poll(timeout_ms=0, max_records=1)
            if full:
                return 0
        return await self._poll(timeout_ms=200, max_records=self._max_in_flight - len(self._tasks))

    async def _poll(self, timeout_ms: int, max_records: int) -> int:
        self._poll_due = time.monotonic() + POLL_KEEPALIVE
        return self._schedule_all(
            await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        )

    def _schedule_all(self, batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> int:
        count = 0
        for tp, records in batches.items():
            for r in records:
                self._schedule(
                    tp,
                    Message(r.topic, r.partition, r.offset, r.key, r.value, dict(r.headers or ())),
                )
                count += 1
        return count

    def _schedule(self, tp: TopicPartition, message: Message) -> None:
        self._offsets.started(tp, message.offset)
        previous = self._tails.get(message.key) if message.key is not None else None
        task = asyncio.create_task(self._run_one(tp, message, previous))
        self._tasks.add(task)
        if message.key is not None:
            self._tails[message.key] = task
        task.add_done_callback(lambda t: self._done(t, message.key))

    async def _run_one(
        self, tp: TopicPartition, message: Message, previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # same object: strictly after the earlier record
        try:
            await self._handler(message)
        except Exception as exc:  # the handler handles per-event errors; this is fatal
            log.exception("fatal error handling %s/%s@%s", tp.topic, tp.partition, message.offset)
            self._fatal = exc
            return
        self._offsets.finished(tp, message.offset)
        self.handled += 1

    def _done(self, task: asyncio.Task[None], key: bytes | None) -> None:
        self._tasks.discard(task)
        if key is not None and self._tails.get(key) is task:
            del self._tails[key]

    def _apply_gate(self) -> None:
        paused = self._consumer.paused()
        if self._gate.is_open:
            if running := self._consumer.assignment() - paused:  # incl. newly assigned ones
                self._consumer.pause(*running)
        elif paused:
            self._consumer.resume(*paused)

    async def _commit(self, partitions: set[TopicPartition] | None = None) -> None:
        offsets = self._offsets.committable()
        if partitions is not None:
            offsets = {tp: o for tp, o in offsets.items() if tp in partitions}
        if not offsets:
            return
        self._commit_due = time.monotonic() + COMMIT_INTERVAL
        try:
            await self._consumer.commit(offsets)
        except (
            KafkaError
        ) as exc:  # e.g. mid-rebalance: the next commit (or the new owner) redoes it
            log.warning("commit of %d partition(s) failed: %s", len(offsets), exc)
            return
        self._offsets.mark_committed(offsets)

    async def _observe(self) -> None:
        PAUSED.set(1 if self._gate.is_open else 0)
        IN_FLIGHT.set(len(self._tasks))
        if time.monotonic() < self._lag_due or not (assignment := self._consumer.assignment()):
            return
        self._lag_due = time.monotonic() + LAG_INTERVAL
        try:
            ends = await self._consumer.end_offsets(list(assignment))
            for tp in assignment:
                done = self._offsets.committed(tp)
                if done is None:  # nothing fetched yet: where this member will start
                    done = await self._consumer.position(tp)
                CONSUMER_LAG.set(max(ends[tp] - done, 0), _partition_labels(tp))
        except KafkaError as exc:  # e.g. mid-rebalance: the next reading will do
            log.debug("lag reading failed: %s", exc)

    async def _drain_check(self, fetched: int, idle_since: float | None) -> float | None:
        """Drain mode: the moment since which we have been caught up and idle, if we are."""
        if fetched or self._tasks or self._gate.is_open:
            return None
        assignment = self._consumer.assignment()
        if not assignment:  # a member given no partition (more workers than partitions) is idle
            if not self.joined:
                return None
            return idle_since if idle_since is not None else time.monotonic()
        try:
            ends = await self._consumer.end_offsets(list(assignment))
            for tp in assignment:
                if await self._consumer.position(tp) < ends[tp]:
                    return None
        except IllegalStateError:  # a rebalance took a partition meanwhile: not idle yet
            return None
        return idle_since if idle_since is not None else time.monotonic()

    async def finish_partitions(self, partitions: set[TopicPartition]) -> None:
        """Before partitions move to another member: finish in-flight work and commit it."""
        if self._tasks:  # rebalances are rare: waiting for all work is simpler than per partition
            await asyncio.wait(self._tasks, timeout=self._shutdown_timeout)
        await self._commit(partitions)
        self._offsets.forget(partitions)
        for tp in partitions:  # its new owner reports it from now on
            CONSUMER_LAG.set(0, _partition_labels(tp))

    async def _shutdown(self) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self._shutdown_timeout)
            for task in pending:  # abandoned: not committed, so handled again after restart
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self._commit()  # a failure is logged; uncommitted records are handled again


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: EventConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._owner.finish_partitions(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._owner.joined = True


def _partition_labels(tp: TopicPartition) -> dict[str, str | int]:
    return {"topic": tp.topic, "partition": tp.partition}
