"""An in-memory record sink: audit and dead-letter records kept in lists, for unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from enforcer.core.verdict import Action
from enforcer.engine.records import AuditRecord, DeadLetterRecord
from enforcer.errors import KafkaUnavailable


class MemorySink:
    """Records are durable once acknowledged. ``send_audit`` acknowledges at once, unless
    ``hold_acks`` (the test resolves ``held``) or ``failed_acks`` (that many sends are lost:
    their acknowledgement raises ``KafkaUnavailable`` and the record is not kept)."""

    def __init__(self) -> None:
        self.audit: list[AuditRecord] = []
        self.dead_letters: list[DeadLetterRecord] = []
        self.hold_acks = False
        self.held: list[tuple[asyncio.Future[None], AuditRecord]] = []
        self.failed_acks = 0
        self._held_more = asyncio.Event()

    @property
    def final(self) -> list[AuditRecord]:
        """The records that close an event: without the intent records published before writes."""
        return [r for r in self.audit if r.action is not Action.REWRITING]

    async def publish_audit(self, record: AuditRecord) -> None:
        self.audit.append(record)

    async def send_audit(self, record: AuditRecord) -> Awaitable[None]:
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failed_acks:
            self.failed_acks -= 1
            ack.set_exception(KafkaUnavailable("publishing: the broker went away"))
        elif self.hold_acks:
            self.held.append((ack, record))
            self._held_more.set()
        else:
            self.audit.append(record)
            ack.set_result(None)
        return ack

    async def wait_held(self, count: int) -> None:
        """Until ``count`` records await their acknowledgement."""
        while len(self.held) < count:
            self._held_more.clear()
            await self._held_more.wait()

    def acknowledge(self) -> None:
        """Acknowledge the held records: they are durable from now on."""
        for ack, record in self.held:
            self.audit.append(record)
            ack.set_result(None)
        self.held.clear()

    async def publish_dead_letter(self, record: DeadLetterRecord, key: bytes | None) -> None:
        self.dead_letters.append(record)
