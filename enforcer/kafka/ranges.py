"""The replicas' side of a distributed backfill: take range tasks from the backfill-tasks topic
as a consumer group, run each (:class:`~enforcer.engine.backfill.RangeRunner`), commit a task's
offset only once its range is complete.

* Each ``enforcer run`` replica runs at most ``max_ranges`` ranges at once; with that many
  running its partitions are paused, and it keeps polling so it stays in the group.
* A task's offset is committed when its range is complete (the contiguous done prefix, as the
  event consumer does), never when it was stopped: the next owner continues from the range's
  committed progress.
* When partitions are revoked (another replica joined, or this one stops) their ranges stop
  listing, finish what they started and commit their progress; a replica that dies instead
  leaves an open transaction, which the next owner aborts when it opens the range's producer.
* With ``drain_idle`` (``enforcer run --drain``) it returns once the whole group has committed
  every task and nothing has run here for that long.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from enforcer.engine.backfill import RangeRunner
from enforcer.engine.range_tasks import RangeTask
from enforcer.errors import PermanentError, RangeMoved
from enforcer.kafka.backfill import open_range_records, read_progress
from enforcer.kafka.offsets import OffsetTracker
from enforcer.kafka.options import KafkaOptions

log = logging.getLogger(__name__)


@dataclass
class KafkaRangeJob:
    """One range task on Kafka: open the range's transactional producer (which aborts and
    fences a previous owner), read its committed progress, run it."""

    kafka: KafkaOptions
    runner: RangeRunner

    def interrupt(self) -> None:
        self.runner.interrupt()

    async def run(self, task: RangeTask) -> bool:
        async with open_range_records(self.kafka, task) as records:
            key = task.task_key.encode()
            progress = (await read_progress(self.kafka, key)).get(task.task_key)
            return await self.runner.run(task, records, progress)


class RangeTaskConsumer:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        new_job: Callable[[], KafkaRangeJob],
        *,
        max_ranges: int,
        shutdown_timeout: float,
        drain_idle: float | None = None,
    ) -> None:
        self._consumer = consumer
        self._new_job = new_job
        self._max = max_ranges
        self._shutdown_timeout = shutdown_timeout
        self._drain_idle = drain_idle
        self._offsets = OffsetTracker()
        self._jobs: dict[asyncio.Task[None], tuple[TopicPartition, KafkaRangeJob]] = {}
        self._stopping = asyncio.Event()
        self._fatal: BaseException | None = None
        self.completed = 0

    def stop(self) -> None:
        self._stopping.set()

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _Rebalance(self)

    async def run(self) -> None:
        idle_since: float | None = None
        try:
            while not self._stopping.is_set() and self._fatal is None:
                await self._fetch()
                await self._commit()
                if self._drain_idle is not None:
                    idle_since = await self._drain_check(idle_since)
                    if idle_since is not None and time.monotonic() - idle_since >= self._drain_idle:
                        break
        finally:
            await self._stop_jobs(set(self._jobs), self._shutdown_timeout)
            await self._commit()
        if self._fatal is not None:
            raise self._fatal

    async def _fetch(self) -> None:
        room = self._max - len(self._jobs)
        if room <= 0:  # full: poll anyway (membership), with every partition paused
            self._consumer.pause(*self._consumer.assignment())
        elif paused := self._consumer.paused():
            self._consumer.resume(*paused)
        batches = await self._consumer.getmany(timeout_ms=500, max_records=max(room, 1))
        for tp, records in batches.items():
            for record in records:
                self._start(tp, record.offset, record.value)

    def _start(self, tp: TopicPartition, offset: int, value: bytes | None) -> None:
        self._offsets.started(tp, offset)
        try:
            task = RangeTask.model_validate_json(value or b"")
        except ValidationError as exc:
            log.warning("skipping a record on %s@%d that is not a range task: %s",
                        tp.topic, offset, exc.errors()[0]["msg"])  # fmt: skip
            self._offsets.finished(tp, offset)
            return
        job = self._new_job()
        runner = asyncio.create_task(self._run_job(tp, offset, task, job))
        self._jobs[runner] = (tp, job)
        runner.add_done_callback(lambda t: self._jobs.pop(t, None))

    async def _run_job(self, tp: TopicPartition, offset: int, task: RangeTask, job: Any) -> None:
        try:
            complete = await job.run(task)
        except RangeMoved:
            log.info("range %s moved to another replica", task.task_key)
            return
        except PermanentError as exc:  # e.g. the bucket is gone: no owner would do better
            log.error("range %s of bucket %s skipped: %s", task.task_key, task.bucket, exc)
            complete = True
        except Exception as exc:  # e.g. Kafka down: fatal; the next owner continues the range
            log.exception("range %s failed", task.task_key)
            self._fatal = exc
            return
        if complete:
            self._offsets.finished(tp, offset)
            self.completed += 1

    async def _commit(self, partitions: set[TopicPartition] | None = None) -> None:
        offsets = self._offsets.committable()
        if partitions is not None:
            offsets = {tp: o for tp, o in offsets.items() if tp in partitions}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:  # mid-rebalance: the range's progress says it is done
            log.warning("commit of %d range task offset(s) failed: %s", len(offsets), exc)
            return
        self._offsets.mark_committed(offsets)

    async def _stop_jobs(self, jobs: set[asyncio.Task[None]], timeout: float) -> None:  # noqa: ASYNC109
        """Interrupt ``jobs``: they stop listing, finish what they started and commit their
        progress; after ``timeout`` they are cancelled (their transaction is aborted)."""
        for task in jobs:
            if task in self._jobs:
                self._jobs[task][1].interrupt()
        if not jobs:
            return
        _, late = await asyncio.wait(jobs, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        mine = {task for task, (tp, _) in self._jobs.items() if tp in partitions}
        await self._stop_jobs(mine, self._shutdown_timeout)
        await self._commit(partitions)
        self._offsets.forget(partitions)

    async def _drain_check(self, idle_since: float | None) -> float | None:
        """Drain mode: since when nothing runs here and the group has committed every task."""
        if self._jobs:
            return None
        topic = next(iter(self._consumer.subscription()), None)
        numbers = sorted(self._consumer.partitions_for_topic(topic) or ())
        partitions = [TopicPartition(topic, p) for p in numbers]
        if not partitions:
            return None
        try:
            ends = await self._consumer.end_offsets(partitions)
            for tp in partitions:
                if ends[tp] and (await self._consumer.committed(tp) or 0) < ends[tp]:
                    return None
        except KafkaError:
            return None
        return idle_since if idle_since is not None else time.monotonic()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: RangeTaskConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._owner.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None
