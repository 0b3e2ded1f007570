"""The forwarding loop: receive a batch from the queue, produce what each message carries,
delete the messages Kafka acknowledged — behind two ports, so it runs on SQS and Kafka in
production and on in-memory fakes in the unit tests.

- **At-least-once.** A message is deleted only after every record produced from it was
  acknowledged (``acks=all``). Whatever is not deleted comes back after the queue's visibility
  timeout and is produced again; the enforcer handles an event twice harmlessly.
- **Kafka down.** The batch in hand is held: its records are produced again with backoff, for as
  long as it takes, and nothing more is received meanwhile — so receive counts do not grow and a
  Kafka outage never pushes messages into the queue's dead-letter queue. Readiness says so.
- **A record Kafka refuses for good** (too large): that message is left on the queue, where the
  queue's redrive policy moves it to its dead-letter queue after ``maxReceiveCount`` receives.
- **SIGTERM** (:meth:`Forwarder.stop`): the long poll is abandoned at once; a batch being
  produced gets ``shutdown_timeout`` seconds to finish and be deleted, then is abandoned (its
  messages stay on the queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol, TypeVar

from enforcer.errors import PermanentError, TransientError
from enforcer.forward.messages import Forwarding, KafkaRecord, translate
from enforcer.retrying import RetryPolicy, retry_transient, retry_until_stopped
from enforcer.telemetry import FORWARD_MESSAGES

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str


class MessageQueue(Protocol):
    async def receive(self, max_messages: int, wait_seconds: int) -> list[QueueMessage]:
        """Up to ``max_messages``, long-polling up to ``wait_seconds``; [] when none came."""

    async def delete(self, messages: Sequence[QueueMessage]) -> None:
        """Delete these received messages (a message the queue cannot delete comes back)."""


class RecordPublisher(Protocol):
    async def publish(self, record: KafkaRecord) -> None:
        """Return once Kafka acknowledged ``record``; KafkaUnavailable while it cannot."""


@dataclass
class ForwardSummary:
    """Counts of SQS messages (and of the Kafka records produced from them)."""

    received: int = 0
    forwarded: int = 0  #: deleted after Kafka acknowledged their records
    skipped: int = 0  #: S3 test events, empty notifications: deleted, nothing produced
    unreadable: int = 0  #: produced as-is for the enforcer's dead-letter topic, then deleted
    kept: int = 0  #: left on the queue (Kafka refused them, or stopped while holding them)
    records: int = 0  #: Kafka records produced and acknowledged

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Forwarder:
    def __init__(
        self,
        queue: MessageQueue,
        publisher: RecordPublisher,
        *,
        batch_size: int = 10,
        wait_time: int = 20,
        drain: bool = False,
        shutdown_timeout: float = 20.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._queue, self._publisher = queue, publisher
        self._batch_size, self._wait_time, self._drain = batch_size, wait_time, drain
        self._shutdown_timeout = shutdown_timeout
        self._retry = retry or RetryPolicy(wait_initial=0.5, wait_max=10.0)
        self._stop = asyncio.Event()
        self._down: dict[str, str] = {}  # dependency → its last error, while it fails
        self.summary = ForwardSummary()

    def stop(self) -> None:
        self._stop.set()

    def readiness(self) -> tuple[bool, str]:
        """For ``/readyz``: not ready while SQS or Kafka fails (the work in hand is held)."""
        if self._down:
            return False, "; ".join(
                f"{what} unavailable: {why}" for what, why in self._down.items()
            )
        return True, "forwarding"

    async def run(self) -> ForwardSummary:
        """Forward until stopped (or, with ``drain``, until a receive returns nothing)."""
        while not self._stop.is_set():
            messages = await self._until_stopped(self._receive())
            if messages is None:
                break
            if not messages:
                if self._drain:
                    break
                continue
            batch = asyncio.ensure_future(self._forward_batch(messages))
            await self._finish(batch)
        return self.summary

    async def _receive(self) -> list[QueueMessage]:
        async def receive() -> list[QueueMessage]:
            with self._watch("SQS", "receiving nothing more"):
                return await self._queue.receive(self._batch_size, self._wait_time)

        return await retry_until_stopped(receive, self._stop.is_set, self._retry)

    async def _until_stopped(self, work: Awaitable[T]) -> T | None:
        """``work``'s result, or None as soon as the forwarder is stopped (work cancelled)."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None

    async def _finish(self, batch: asyncio.Future[None]) -> None:
        """Wait for ``batch``; once stopped, give it ``shutdown_timeout`` seconds more."""
        await self._until_stopped(asyncio.shield(batch))
        if batch.done():
            batch.result()  # its error, if it failed
            return
        try:
            await asyncio.wait_for(batch, self._shutdown_timeout)
        except TimeoutError:
            log.warning("stopped with a batch still unacknowledged: its messages stay on the "
                        "queue and are delivered again")  # fmt: skip

    async def _forward_batch(self, messages: list[QueueMessage]) -> None:
        self.summary.received += len(messages)
        done = await asyncio.gather(*(self._forward(message) for message in messages))
        acknowledged = [m for m, ok in zip(messages, done, strict=True) if ok]
        if acknowledged:
            await self._delete(acknowledged)

    async def _forward(self, message: QueueMessage) -> bool:
        """Produce what ``message`` carries; True once Kafka acknowledged all of it."""
        forwarding = translate(message.body)
        _log_forwarding(message, forwarding)
        try:
            await retry_until_stopped(
                lambda: self._publish(forwarding.records), self._stop.is_set, self._retry
            )
        except TransientError as exc:  # stopped while Kafka was still down
            self._count("kept")
            log.info("SQS message %s left on the queue: %s", message.message_id, exc)
            return False
        except PermanentError as exc:
            self._count("kept")
            log.error("Kafka refuses SQS message %s for good (%s: %s): left on the queue for its "
                      "redrive policy", message.message_id, exc.code, exc)  # fmt: skip
            return False
        self._count(forwarding.result)
        self.summary.records += len(forwarding.records)
        return True

    async def _publish(self, records: Sequence[KafkaRecord]) -> None:
        with self._watch("Kafka", "holding the received messages and receiving no more"):
            sent = [self._publisher.publish(record) for record in records]
            results = await asyncio.gather(*sent, return_exceptions=True)
            if failures := [r for r in results if isinstance(r, BaseException)]:
                raise failures[0]

    @contextlib.contextmanager
    def _watch(self, what: str, meanwhile: str) -> Iterator[None]:
        """Log once when ``what`` starts failing transiently, and once when it works again."""
        try:
            yield
        except TransientError as exc:
            if what not in self._down:
                log.warning("%s is unavailable (%s): %s until it answers", what, exc, meanwhile)
            self._down[what] = str(exc)
            raise
        if self._down.pop(what, None) is not None:
            log.info("%s answers again", what)

    async def _delete(self, messages: list[QueueMessage]) -> None:
        try:
            await retry_transient(lambda: self._queue.delete(messages), self._retry)
        except TransientError as exc:
            log.warning(
                "could not delete %d forwarded message(s) (%s): the queue delivers them again, "
                "and they are forwarded again (harmless)",
                len(messages),
                exc,
            )

    def _count(self, result: str) -> None:
        setattr(self.summary, result, getattr(self.summary, result) + 1)
        FORWARD_MESSAGES.add(1, {"result": result})


def _log_forwarding(message: QueueMessage, forwarding: Forwarding) -> None:
    if forwarding.result == "skipped":
        log.info("SQS message %s skipped: %s", message.message_id, forwarding.note)
    elif forwarding.result == "unreadable":
        log.warning(
            "SQS message %s is not an S3 event the enforcer can read (%s): produced as-is; the "
            "enforcer dead-letters it",
            message.message_id,
            forwarding.note,
        )
