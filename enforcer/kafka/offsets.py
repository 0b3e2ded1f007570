"""Which offsets a member may commit: per partition the records in flight, the next offset after
everything fetched, and what is committed (pure; :class:`~enforcer.kafka.consumer.EventConsumer`
does the I/O)."""

from __future__ import annotations

from aiokafka import TopicPartition


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

    def next_offset(self, tp: TopicPartition) -> int | None:
        """The next offset this member will fetch from ``tp``, if known."""
        return self._fetched.get(tp, self._committed.get(tp))

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
