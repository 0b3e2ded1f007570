"""Audit and dead-letter records (a contract: schemas/ holds their JSON Schemas).

Audit records are flat JSON so stream SQL engines can read them: ``bucket``, ``key`` (decoded),
``verdict``, ``action`` and ``mode`` are top-level. Neither record ever holds key material.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from enforcer.verdict import Action, Verdict

AUDIT_SCHEMA_VERSION = 1
DLQ_SCHEMA_VERSION = 2


class AuditRecord(BaseModel):
    """One per handled event (and per ignored record), keyed ``bucket/object`` on Kafka."""

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
    required_key: str | None = None
    rule_source: str | None = None
    verdict: Verdict | None = Field(default=None, description="Absent for ignored records")
    action: Action
    reason: str | None = None
    new_version_id: str | None = None
    new_etag: str | None = None
    key_used: str | None = Field(default=None, description="EK the object was re-encrypted under")
    purged_version_id: str | None = None
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
        description="The record value, UTF-8 (or base64 if binary); only its start if truncated"
    )
    payload_encoding: str = Field(default="utf-8", description="utf-8 | base64")
    original_key: str | None = Field(default=None, description="Only its start if truncated")
    truncated: bool = Field(
        default=False,
        description="The payload or key was cut to fit the broker; such a record cannot be "
        "replayed, find the original by its length and SHA-256",
    )
    original_length: int | None = Field(default=None, description="Bytes of the record value")
    original_sha256: str | None = Field(default=None, description="Hex SHA-256 of the value")
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
