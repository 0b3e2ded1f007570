"""Two lanes on one consumer: live notifications first, backfill events with spare capacity only
(pure; :class:`~enforcer.kafka.consumer.EventConsumer` applies the plan each turn of its loop).

``enforcer scan --enqueue`` publishes its backfill events to a topic of their own, which the
service's consumer group subscribes to beside the notification topics. A backfill of millions of
objects must not put new writes behind it, so each turn:

* the backfill partitions are paused while the outage gate holds consumption, and while more
  live notifications than ``max_live_lag`` wait on this member's live partitions (not fetched
  yet: the high watermark the broker reported with the last fetch, minus the next offset);
* backfill records are taken only into the work slots live work leaves idle (``slots`` minus
  the records in flight of both lanes), so a live record never queues for a slot behind more
  backfill records than there are slots; and in batches of a quarter of the slots, so a lane
  that is nearly full does not fetch one record per turn;
* when the window is full, or the gate holds consumption, every partition is paused: the loop
  still polls every turn (a poll that cannot return records), so the member keeps its group
  whatever holds the work slots.

Ordering: a record's Kafka key is ``bucket/object`` on both lanes, and the consumer runs the
records of one key one after another whatever their topic, so on one member a backfill event
and a live event of the same object never run at once.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from aiokafka import TopicPartition


@dataclass(frozen=True)
class BackfillLane:
    """The backfill topic and how much live work holds it back (plain options)."""

    topic: str
    max_live_lag: int


@dataclass(frozen=True)
class Turn:
    """What the loop knows at the start of a turn."""

    gate_paused: bool
    window_full: bool
    live: frozenset[TopicPartition]
    backfill: frozenset[TopicPartition]
    live_in_flight: int = 0
    backfill_in_flight: int = 0
    #: Live notifications not fetched yet on this member's partitions; None: not known yet.
    live_lag: int | None = 0


@dataclass(frozen=True)
class Plan:
    """What to do this turn: which partitions to pause, how many backfill records to take."""

    paused: frozenset[TopicPartition]
    backfill_room: int = 0
    #: The backfill lane waits for live work or for the outage gate.
    held: bool = False


def split(assignment: Set[TopicPartition], lane: BackfillLane | None) -> Turn:
    """The assignment's live and backfill partitions (everything else of the turn zero)."""
    backfill = frozenset(tp for tp in assignment if lane is not None and tp.topic == lane.topic)
    return Turn(False, False, frozenset(assignment) - backfill, backfill)


def plan_turn(turn: Turn, lane: BackfillLane | None, slots: int) -> Plan:
    everything = turn.live | turn.backfill
    if turn.gate_paused or turn.window_full:
        return Plan(everything, held=bool(turn.backfill))
    if lane is None or not turn.backfill:
        return Plan(frozenset())
    held = _live_holds_back(turn, lane)
    room = 0 if held else _spare(turn, slots)
    # With no live partition here, nothing to take means the backfill partitions must be
    # paused: the turn's poll then returns nothing and only keeps the membership.
    paused = turn.backfill if held or (room == 0 and not turn.live) else frozenset()
    return Plan(paused, room, held)


def range_may_start(turn: Turn, lane: BackfillLane | None, slots: int) -> bool:
    """Whether a range backfill (``scan --split N --enqueue``) may start one more object: the
    lane's rule, applied to work that comes from a listing instead of the backfill topic."""
    if turn.gate_paused or turn.window_full or _live_holds_back(turn, lane):
        return False
    return _spare(turn, slots) > 0


def _live_holds_back(turn: Turn, lane: BackfillLane | None) -> bool:
    """More live notifications wait (or how many is not known yet) than the lane allows."""
    return lane is not None and (turn.live_lag is None or turn.live_lag > lane.max_live_lag)


def _spare(turn: Turn, slots: int) -> int:
    """The work slots neither lane uses, when at least a quarter of them (else 0)."""
    spare = slots - turn.live_in_flight - turn.backfill_in_flight
    return spare if spare >= max(1, slots // 4) else 0


def live_lag(
    live: Set[TopicPartition],
    highwater: dict[TopicPartition, int | None],
    next_offset: dict[TopicPartition, int | None],
) -> int | None:
    """Live records not fetched yet: per partition the high watermark minus the next offset to
    fetch, summed; None while either is unknown for a partition."""
    total = 0
    for tp in live:
        end, position = highwater.get(tp), next_offset.get(tp)
        if end is None or position is None:
            return None
        total += max(end - position, 0)
    return total
