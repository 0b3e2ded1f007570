"""A distributed backfill: key ranges as tasks for the service's replicas, each range's progress
committed together with its objects' final audit records.

``enforcer scan --split N --enqueue`` cuts the bucket into key ranges and publishes one
:class:`~enforcer.engine.range_tasks.RangeTask` each. An ``enforcer run`` replica that takes a
task lists the range and runs its objects through the same per-object guard as everything else
(:class:`RangeRunner`, a :class:`~enforcer.engine.scanner.Scanner` over one lister), and every
few seconds commits the range's :class:`~enforcer.engine.range_tasks.RangeProgress` *in the same
transaction* as the final audit records published since the last commit (:class:`RangeLedger`
over the :class:`RangeRecords` port).

**Exactly one final record per object, across a SIGKILL.** A replica that dies mid-range leaves
an open transaction; the replica that takes the task over opens the range's transactional
producer under the same id, which aborts it (and fences the old producer, should it still be
alive), then reads the last committed progress. Readers with ``read_committed`` never see the
aborted final records; the objects behind them are handled again. What the progress says is
done is exactly what committed records cover: the done prefix of the listing (``after_key``) plus
the keys finished beyond it (``done_beyond``) — a key is noted in the ledger before its record is
sent, and a commit waits for the sends in flight, so no record commits without its key and no
key without its record.

**The audit trail of a rewrite survives.** Intent records (action ``rewriting``) are not part of
the transaction: each is published and acknowledged before its rewrite, as always. An object the
dead replica rewrote is found compliant by the next owner, which publishes its final record
under the same event id (ids derive from the backfill's id and the object), so the audit topic
shows "a rewriting record followed by a compliant one for the same event": re-encrypted by the
enforcer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from enforcer.core.verdict import Action
from enforcer.engine.checkpoint import DoneTracker
from enforcer.engine.guard import ObjectGuard
from enforcer.engine.objects import ListedObject
from enforcer.engine.ports import BackfillCapacity, RangeRecords
from enforcer.engine.range_tasks import RangeProgress, RangeTask
from enforcer.engine.records import AuditRecord, DeadLetterRecord
from enforcer.engine.scanner import Scanner, ScanOptions, ScanSource, ScanSummary

log = logging.getLogger(__name__)

#: Seconds between two commits of a range's progress (and of its final records).
COMMIT_EVERY = 2.0
#: Entries a range's lister may run ahead of the first unfinished one: bounds ``done_beyond``.
MAX_AHEAD = 2048

#: Lists ``bucket``/``prefix`` after ``start_after`` up to ``through`` (with listed facts).
ListRange = Callable[[str, str, str | None, str | None], AsyncIterator[ListedObject]]


class _SendsAndCommits:
    """Sends may overlap each other; a commit waits until none is in flight, and holds new
    ones back until it is done (an asyncio shared/exclusive lock, the commit preferred)."""

    def __init__(self) -> None:
        self._sends = 0
        self._committing = False
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def send(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._committing)
            self._sends += 1
        try:
            yield
        finally:
            async with self._changed:
                self._sends -= 1
                self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def commit(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._committing)
            self._committing = True
            await self._changed.wait_for(lambda: self._sends == 0)
        try:
            yield
        finally:
            async with self._changed:
                self._committing = False
                self._changed.notify_all()


class RangeLedger:
    """The record sink of one range's final records: notes each object as done as its record
    goes into the open transaction, and commits progress and records together."""

    def __init__(self, records: RangeRecords, progress: RangeProgress, owner: str) -> None:
        self._records = records
        self.progress = progress
        self._owner = owner
        self._noted: set[str] = set(progress.done_beyond)
        self._verdicts = Counter(progress.verdicts)
        self._actions = Counter(progress.actions)
        self._objects, self._failed = progress.objects, progress.failed
        self._lock = _SendsAndCommits()
        self._broken: BaseException | None = None

    async def publish_audit(self, record: AuditRecord) -> None:
        async with self._lock.send():
            if record.key not in self._noted:  # (a send retried is the same object)
                self._noted.add(record.key)
                self._objects += 1
                self._verdicts[str(record.verdict or "unknown")] += 1
                self._actions[record.action.value] += 1
                self._failed += record.action is Action.FAILED
            try:
                await self._records.publish_audit(record)
            except BaseException as exc:  # the transaction is spoilt: it must not commit
                self._broken = exc
                raise

    async def send_audit(self, record: AuditRecord) -> Awaitable[None]:
        """Published at once: a range's record must be in its transaction before a commit can
        count its object."""
        await self.publish_audit(record)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def publish_dead_letter(self, record: DeadLetterRecord, key: bytes | None) -> None:
        async with self._lock.send():
            await self._records.publish_dead_letter(record, key)

    async def commit(self, tracker: DoneTracker, *, complete: bool, now: datetime) -> None:
        """Commit the progress (``tracker``'s done prefix and the noted keys beyond it) with the
        records published since the last commit; raise if one of those sends failed."""
        async with self._lock.commit():
            if self._broken is not None:
                raise self._broken
            done = tracker.done_through
            after_key = done.key if done is not None else self.progress.after_key
            beyond = sorted(k for k in self._noted if after_key is None or k > after_key)
            progress = self.progress.model_copy(
                update={
                    "after_key": after_key, "done_beyond": [] if complete else beyond,
                    "objects": self._objects, "verdicts": dict(self._verdicts),
                    "actions": dict(self._actions), "failed": self._failed,
                    "complete": complete, "owner": self._owner, "updated": now,
                }
            )  # fmt: skip
            await self._records.commit(progress)
            self.progress = progress
            self._noted = set(beyond)


@dataclass
class RangeRunner:
    """Runs one range task: lists the range where its committed progress says, through the
    guard (final records to a :class:`RangeLedger`), committing every ``commit_every`` s."""

    guard: ObjectGuard
    list_range: ListRange
    owner: str = ""
    capacity: BackfillCapacity | None = None
    commit_every: float = COMMIT_EVERY
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __post_init__(self) -> None:
        self._scanner: Scanner | None = None
        self._interrupted = False

    def interrupt(self) -> None:
        """Stop listing; the objects started finish and their progress is committed."""
        self._interrupted = True
        if self._scanner is not None:
            self._scanner.interrupt()

    async def run(
        self, task: RangeTask, records: RangeRecords, progress: RangeProgress | None
    ) -> bool:
        """Run ``task`` from ``progress`` (its last committed one) with ``records`` (the open
        transaction); True when the range is complete, False when interrupted first."""
        progress = progress or RangeProgress.first(task, self.now())
        if progress.complete:
            return True
        ledger = RangeLedger(records, progress, self.owner)
        summary = ScanSummary(task.bucket, task.prefix, self.guard.mode.value, "")
        options = ScanOptions(run_id=task.backfill_id, max_ahead=MAX_AHEAD, capacity=self.capacity)
        self._scanner = Scanner(self.guard.with_records(ledger), summary, options)
        if self._interrupted:
            self._scanner.interrupt()
        tracker = DoneTracker()
        start = progress.after_key
        items = _skipping(self.list_range(task.bucket, task.prefix, start, task.through),
                          frozenset(progress.done_beyond))  # fmt: skip
        committer = asyncio.create_task(self._commit_often(ledger, tracker))
        try:
            await self._scanner.run_sources([ScanSource(items, tracker)])
        finally:
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
        complete = not summary.interrupted
        await ledger.commit(tracker, complete=complete, now=self.now())
        log.info("range %s %s: %s, %d objects", task.task_key, task.key_range.describe(),
                 "complete" if complete else "stopped", ledger.progress.objects)  # fmt: skip
        return complete

    async def _commit_often(self, ledger: RangeLedger, tracker: DoneTracker) -> None:
        try:
            while True:
                await asyncio.sleep(self.commit_every)
                await ledger.commit(tracker, complete=False, now=self.now())
        except Exception:  # the final commit says why; stop listing meanwhile
            self.interrupt()
            raise


async def _skipping(
    items: AsyncIterator[ListedObject], done: frozenset[str]
) -> AsyncIterator[ListedObject]:
    """The listed objects not already done (the keys a previous owner finished past its done
    prefix)."""
    async for item in items:
        if item.key not in done:
            yield item
