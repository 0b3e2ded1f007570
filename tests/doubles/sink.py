"""An in-memory record sink: audit and dead-letter records kept in lists, for unit tests."""

from __future__ import annotations

from enforcer.core.verdict import Action
from enforcer.engine.records import AuditRecord, DeadLetterRecord


class MemorySink:
    def __init__(self) -> None:
        self.audit: list[AuditRecord] = []
        self.dead_letters: list[DeadLetterRecord] = []

    @property
    def final(self) -> list[AuditRecord]:
        """The records that close an event: without the intent records published before writes."""
        return [r for r in self.audit if r.action is not Action.REWRITING]

    async def publish_audit(self, record: AuditRecord) -> None:
        self.audit.append(record)

    async def publish_dead_letter(self, record: DeadLetterRecord, key: bytes | None) -> None:
        self.dead_letters.append(record)
