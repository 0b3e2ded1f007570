"""The Kafka loop: fetch, fan out with bounded concurrency, keep per-object order, commit safely.

Only the mechanics live here; what happens to a record is the engine's business: each one is
handed over as an :class:`enforcer.engine.ports.Message` to the handler it was given (the
engine's :class:`~enforcer.engine.handler.RecordHandler`). Guarantees:

* records with the same Kafka key (``bucket/object``) run one after another, in offset order
  (and across the live and backfill topics, in the order fetched); others run concurrently: at
  most ``4 x concurrency`` records are in flight (the window), and the handler bounds how many
  objects are worked on at once;
* a record the handler parks (its key is unusable: :meth:`EventConsumer.parked`) leaves the
  window but stays in flight: its partition's commit stops at the oldest parked offset until
  it is done, so a restart loses nothing; revocation and shutdown abandon parked records at
  once (uncommitted: their partitions' next owner parks them again);
* an offset is committed only when every record before it in its partition is done (the
  contiguous done prefix), so a crash replays, never skips (at-least-once); while records are in
  flight at most once a second, at once when idle;
* the position a partition starts from is committed as soon as it is assigned, when the group
  has none there yet (what Kafka's Java consumer does with auto-commit): a partition that
  delivered nothing before a restart does not start again from ``auto_offset_reset``, so
  ``latest`` means "from the group's first start";
* the backfill topic is consumed with spare capacity only (:mod:`enforcer.kafka.lanes`), and
  range backfills start an object only when :meth:`EventConsumer.admit` says the same rule
  allows it;
* the loop polls every turn whatever holds the work slots or the outage gate — with every
  partition paused while the gate holds consumption or the window is full, so such a poll
  returns nothing — and a revocation waits for in-flight work at most half the rebalance
  timeout: the member keeps its group membership;
* ``stop()`` (SIGTERM) stops fetching, lets in-flight work finish within a bound, commits, returns.

Each turn of the loop also sets the gauges ``enforcer.paused``, ``enforcer.backfill.paused`` and
``enforcer.records.in_flight``, and every few seconds ``enforcer.consumer.lag`` per assigned
partition (end offset minus committed offset, read from the broker, so it grows during a pause
too).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord

from enforcer.engine.ports import ConsumptionGate, Message
from enforcer.kafka.lanes import (
    BackfillLane,
    Plan,
    Turn,
    live_lag,
    plan_turn,
    range_may_start,
    split,
)
from enforcer.kafka.offsets import OffsetTracker
from enforcer.telemetry import BACKFILL_PAUSED, CONSUMER_LAG, IN_FLIGHT, PAUSED

log = logging.getLogger(__name__)

#: Seconds between two readings of the partitions' end offsets for the lag gauge.
LAG_INTERVAL = 5.0
#: While records are in flight, offsets are committed at most this often (a commit is a broker
#: round trip; per record it costs as much CPU as the record). When idle, at once.
COMMIT_INTERVAL = 1.0
#: Milliseconds a turn waits for live records while backfill work is in flight (else 200):
#: slots it frees are refilled within this.
LANE_TURN_MS = 20


Handler = Callable[[Message], Awaitable[None]]


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
        backfill: BackfillLane | None = None,
        rebalance_wait: float | None = None,
    ) -> None:
        """``backfill``: the lane consumed with spare capacity (its topic must be subscribed
        too). ``rebalance_wait``: how long a revocation waits for in-flight work before it
        abandons it — below the group's rebalance timeout, or the member is dropped."""
        self._consumer = consumer
        self._handler = handler
        self._gate = gate
        self._slots = concurrency
        self._max_in_flight = concurrency * 4
        self._shutdown_timeout = shutdown_timeout
        self._rebalance_wait = shutdown_timeout if rebalance_wait is None else rebalance_wait
        self._drain_idle = drain_idle
        self._lane = backfill
        self._offsets = OffsetTracker()
        self._tasks: dict[asyncio.Task[None], TopicPartition] = {}
        self._by_position: dict[tuple[str, int, int], asyncio.Task[None]] = {}
        self._parked: set[asyncio.Task[None]] = set()  # in flight, out of the window
        self._window_freed = asyncio.Event()
        self._tails: dict[bytes, asyncio.Task[None]] = {}
        self._unsettled: set[TopicPartition] = set()  # assigned; starting position not committed
        self._stopping = asyncio.Event()
        self._fatal: BaseException | None = None
        self._lag_due = 0.0
        self._commit_due = 0.0
        self._plan = Plan(frozenset())
        self._spare = asyncio.Event()  # set while a range backfill may start objects
        self.handled = 0
        #: True once the group has given this member an assignment (possibly empty: more
        #: members than partitions). Readiness waits for it.
        self.joined = False

    def stop(self) -> None:
        self._stopping.set()

    def parked(self, message: Message) -> None:
        """The handler parked ``message`` (the engine's ParkingListener port): it no longer
        counts against the window; its offset stays uncommitted until it is done."""
        task = self._by_position.get((message.topic, message.partition, message.offset))
        if task is not None and not task.done() and task not in self._parked:
            self._parked.add(task)
            self._window_freed.set()

    def _active(self) -> list[asyncio.Task[None]]:
        """The records in flight that take room in the window (parked ones do not)."""
        return [task for task in self._tasks if task not in self._parked]

    async def admit(self) -> None:
        """The engine's BackfillCapacity port: return once a range backfill may start one more
        object (live work leaves spare slots, the gate is closed, live lag is below the lane's
        threshold); at once after the loop ended."""
        await self._spare.wait()

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _Rebalance(self)

    async def run(self) -> None:
        idle_since: float | None = None
        try:
            while not self._stopping.is_set() and self._fatal is None:
                fetched = await self._fetch()
                await self._commit_starting_positions()
                if not self._tasks or time.monotonic() >= self._commit_due:
                    await self._commit()
                await self._observe()
                if self._drain_idle is None:
                    continue
                idle_since = await self._drain_check(fetched, idle_since)
                if idle_since is not None and time.monotonic() - idle_since >= self._drain_idle:
                    break
        finally:
            self._spare.set()  # nothing live left to come first
            await self._shutdown()
        if self._fatal is not None:
            raise self._fatal

    async def _fetch(self) -> int:
        waited = False
        active = self._active()
        if len(active) > self._max_in_flight // 2:  # refill in batches, not one by one
            freed = asyncio.ensure_future(self._window_freed.wait())  # a record parked
            await asyncio.wait([*active, freed], timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            freed.cancel()
            self._window_freed.clear()
            waited = True
        turn = self._apply_plan()
        return await self._poll(turn, timeout_ms=0 if waited else 200)

    def _apply_plan(self) -> Turn:
        """Pause what this turn's plan says (everything during an outage or with a full
        window; the backfill lane while live work comes first), resume the rest. Returns the
        turn it planned."""
        turn = split(self._consumer.assignment(), self._lane)
        active = self._active()
        lane_tasks = sum(1 for task in active if self._tasks[task] in turn.backfill)
        turn = replace(
            turn,
            gate_paused=self._gate.is_open,
            window_full=len(active) > self._max_in_flight // 2,
            live_in_flight=len(active) - lane_tasks,
            backfill_in_flight=lane_tasks,
            live_lag=self._live_lag(turn.live) if self._lane is not None else 0,
        )
        self._plan = plan_turn(turn, self._lane, self._slots)
        if range_may_start(turn, self._lane, self._slots):
            self._spare.set()
        else:
            self._spare.clear()
        paused = self._consumer.paused()
        if pause := self._plan.paused - paused:
            self._consumer.pause(*pause)
        if resume := paused - self._plan.paused:
            self._consumer.resume(*resume)
        return turn

    def _live_lag(self, live: frozenset[TopicPartition]) -> int | None:
        highwater = {tp: self._consumer.highwater(tp) for tp in live}
        return live_lag(live, highwater, {tp: self._offsets.next_offset(tp) for tp in live})

    def _room(self) -> int:
        return max(self._max_in_flight - (len(self._tasks) - len(self._parked)), 0)

    async def _poll(self, turn: Turn, timeout_ms: int) -> int:
        """One poll per turn, always: a member that does not poll for max.poll.interval leaves
        its group. Backfill partitions up to the plan's room, without waiting; live ones up to
        the window, waiting for records at most ``timeout_ms`` (shorter while backfill work is
        in flight, so its freed slots are refilled promptly)."""
        backfill = turn.backfill - self._plan.paused
        room = min(self._plan.backfill_room, self._room())
        if turn.backfill_in_flight and not self._plan.held:
            timeout_ms = min(timeout_ms, LANE_TURN_MS)
        fetched = 0
        if backfill and room > 0:
            fetched = self._schedule_all(
                await self._consumer.getmany(
                    *backfill, timeout_ms=0 if turn.live else timeout_ms, max_records=room
                )
            )
        if turn.live or not backfill:  # (no partition named: every partition, all paused here)
            batches = await self._consumer.getmany(
                *turn.live,
                timeout_ms=0 if fetched else timeout_ms,
                max_records=max(self._room(), 1),
            )
            fetched += self._schedule_all(batches)
        return fetched

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
        self._tasks[task] = tp
        position = (message.topic, message.partition, message.offset)
        self._by_position[position] = task
        if message.key is not None:
            self._tails[message.key] = task
        task.add_done_callback(lambda t: self._done(t, message.key, position))

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

    def _done(
        self, task: asyncio.Task[None], key: bytes | None, position: tuple[str, int, int]
    ) -> None:
        self._tasks.pop(task, None)
        self._parked.discard(task)
        if self._by_position.get(position) is task:
            del self._by_position[position]
        if key is not None and self._tails.get(key) is task:
            del self._tails[key]

    async def _commit_starting_positions(self) -> None:
        """Commit where this member starts on each newly assigned partition: the first offset
        it fetched there, or its position. Runs before any other commit of those partitions
        (right after the poll that may have delivered their first records), so it never moves
        a committed offset back; a partition that already had one gets the same value again."""
        pending = self._unsettled & self._consumer.assignment()
        self._unsettled.clear()
        if not pending:
            return
        starts: dict[TopicPartition, int] = {}
        try:
            for tp in sorted(pending):
                start = self._offsets.committed(tp)  # set by the first record fetched
                starts[tp] = start if start is not None else await self._consumer.position(tp)
            await self._consumer.commit(starts)
        except (KafkaError, IllegalStateError) as exc:  # mid-rebalance: the next turn retries
            log.warning("commit of the starting positions failed: %s", exc)
            self._unsettled |= pending
            return
        self._offsets.mark_committed(starts)

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
        BACKFILL_PAUSED.set(1 if self._plan.held else 0)
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

    def assigned(self, partitions: set[TopicPartition]) -> None:
        """The group gave this member ``partitions``. The backfill lane's start paused: only a
        turn's plan opens it, so the poll that joins the group (it names no partition, and
        fetches from every one assigned) brings no backfill record."""
        self.joined = True
        self._unsettled |= partitions
        if self._lane is not None:
            lane = self._lane.topic
            if backfill := [tp for tp in partitions if tp.topic == lane]:
                self._consumer.pause(*backfill)

    async def finish_partitions(self, partitions: set[TopicPartition]) -> None:
        """Before partitions move to another member: finish their in-flight work — for at
        most ``rebalance_wait``, then abandon it (not committed, so their next owner handles
        it again) — and commit."""
        mine = [task for task, tp in self._tasks.items() if tp in partitions]
        if late := await self._finish(mine, self._rebalance_wait):
            log.warning("abandoned %d record(s) still in flight on revoked partitions "
                        "(parked ones included)", late)  # fmt: skip
        await self._commit(partitions)
        self._offsets.forget(partitions)
        self._unsettled -= partitions
        for tp in partitions:  # its new owner reports it from now on
            CONSUMER_LAG.set(0, _partition_labels(tp))

    async def _finish(self, tasks: list[asyncio.Task[None]], timeout: float) -> int:  # noqa: ASYNC109
        """Let ``tasks`` finish within ``timeout``, parked ones aside (they wait for their key:
        abandoned at once), then abandon the rest: not committed, so handled again by the
        partitions' next owner or after a restart. Returns how many were abandoned."""
        parked = [task for task in tasks if task in self._parked]
        for task in parked:
            task.cancel()
        running = [task for task in tasks if task not in self._parked]
        late: set[asyncio.Task[None]] = set()
        if running:
            _, late = await asyncio.wait(running, timeout=timeout)
            for task in late:
                task.cancel()
        if parked or late:
            await asyncio.wait([*parked, *late])
        return len(parked) + len(late)

    async def _shutdown(self) -> None:
        await self._finish(list(self._tasks), self._shutdown_timeout)
        await self._commit()  # a failure is logged; uncommitted records are handled again


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: EventConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._owner.finish_partitions(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._owner.assigned(set(assigned))


def _partition_labels(tp: TopicPartition) -> dict[str, str | int]:
    return {"topic": tp.topic, "partition": tp.partition}
