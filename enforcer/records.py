"""Audit and dead-letter records (contract: DESIGN §8).

Audit records are flat JSON so stream SQL engines can read them: ``bucket``, ``key`` (decoded),
``verdict``, ``action`` and ``mode`` are top-level. Neither record ever holds key material.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from enforcer.verdict import Action, Verdict

AUDIT_SCHEMA_VERSION = 2
DLQ_SCHEMA_VERSION = 1


class AuditRecord(BaseModel):
    """One per handled event (and per ignored record), keyed ``bucket/object`` on Kafka.

    No write without an audit trail: before every rewrite the enforcer publishes, and waits for
    the broker to acknowledge, an *intent* record — action ``rewriting``, same ``event_id``, the
    source ``version_id``/``observed_etag`` it is about to replace. The event's final record
    follows. If the process dies between the write and the final record, the event is handled
    again and finds the object compliant (action ``none``); the intent record before it says the
    enforcer wrote it. So an object was re-encrypted by the enforcer if it has a ``reencrypted``
    record, or a ``rewriting`` record followed by a ``compliant`` one for the same event.

    A failure after a successful rewrite (the purge of the old version) keeps action
    ``reencrypted`` with the new version and says what failed in ``post_rewrite_error``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = AUDIT_SCHEMA_VERSION
    event_id: str
    event_name: str | None = None
    bucket: str
    key: str = Field(description="Object key, decoded")
    version_id: str | None = None
    observed_sse: str | None = Field(
        default=None, description="none | AES256 | aws:kms | sse-c | envelope"
    )
    observed_kms_key: str | None = None
    observed_etag: str | None = Field(default=None, description="ETag of the inspected version")
    required_key: str | None = None
    rule_source: str | None = None
    verdict: Verdict | None = Field(default=None, description="Absent for ignored records")
    action: Action
    reason: str | None = None
    new_version_id: str | None = None
    new_etag: str | None = None
    key_used: str | None = Field(default=None, description="EK the object was re-encrypted under")
    purged_version_id: str | None = None
    post_rewrite_error: str | None = Field(
        default=None,
        description="The rewrite succeeded, then this step failed (e.g. 'purge: access_denied: "
        "...'); action stays reencrypted",
    )
    strategy: str | None = None
    attempts: int = 1
    duration_ms: float
    trace_id: str = ""
    mode: str
    timestamp: datetime
    enforcer_version: str

    @property
    def kafka_key(self) -> bytes:
        return f"{self.bucket}/{self.key}".encode()


class DeadLetterRecord(BaseModel):
    """What the enforcer could not handle, with enough to replay it (``enforcer dlq replay``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = DLQ_SCHEMA_VERSION
    original_payload: str | None = Field(
        description="The record value, UTF-8 (or base64 if binary)"
    )
    payload_encoding: str = Field(default="utf-8", description="utf-8 | base64")
    original_key: str | None = None
    topic: str
    partition: int
    offset: int
    error_class: str
    reason: str
    attempts: int
    first_seen: datetime
    last_seen: datetime
    event_id: str | None = None
    enforcer_version: str
