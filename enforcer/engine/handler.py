"""What happens to one input message: parse it, and hand each object event to the guard.

A message that cannot be read is dead-lettered as ``bad_event``. A readable one may carry many
records: the ones naming objects run through the per-object guard
(:class:`~enforcer.engine.guard.ObjectGuard`) concurrently across objects and in order per
object; the others (deletes, test events) get an audit record saying why they were skipped.
The guard decides what an outcome means: records, metrics, dead letters, outages, parking. When
it parks an object event (its key is unusable), the consumer is told through the
:class:`~enforcer.engine.ports.ParkingListener` port, once per message: the message no longer
takes room in its window, and its offset stays uncommitted until it is done.
"""

from __future__ import annotations

from opentelemetry import trace

from enforcer.core.events import IgnoredRecord, ObjectEvent, parse_message
from enforcer.engine.fanout import run_per_object
from enforcer.engine.guard import ObjectGuard
from enforcer.engine.ports import Message, ParkingListener
from enforcer.errors import BadEvent
from enforcer.telemetry import TRACER, context_from_headers, step


class RecordHandler:
    """The consumer's handler: one :class:`Message` at a time (many at once, per object in
    order)."""

    def __init__(self, guard: ObjectGuard, listener: ParkingListener | None = None) -> None:
        self.guard = guard
        #: Told when a message is parked (the consumer; wired by :mod:`enforcer.app`).
        self.listener = listener

    async def __call__(self, message: Message) -> None:
        attributes: dict[str, str | int] = {
            "messaging.kafka.partition": message.partition,
            "messaging.kafka.offset": message.offset,
            "messaging.source": message.topic,
        }
        context = context_from_headers(message.headers)
        with TRACER.start_as_current_span("event", context=context, attributes=attributes):
            try:
                with step("parse"):
                    parsed = parse_message(message.value)
            except BadEvent as exc:
                first_seen = self.guard.now()
                await self.guard.records.dead_letter(
                    message, exc, attempts=1, first_seen=first_seen
                )
                return

            def parked() -> None:
                if self.listener is not None:
                    self.listener.parked(message)

            async def handle(item: IgnoredRecord | ObjectEvent) -> None:
                if isinstance(item, IgnoredRecord):
                    await self.guard.records.publish_ignored(item)
                else:
                    trace.get_current_span().set_attribute("bucket", item.bucket)
                    await self.guard.handle(item, message=message, on_park=parked)

            await run_per_object(parsed, handle, self.guard.concurrency)
