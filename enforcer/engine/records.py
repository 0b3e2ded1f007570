"""Audit, dead-letter and scan-line records: the models (a contract, see docs/contract.md) and
their builders, pure (the caller passes the clock's reading and the trace id).

Audit records are flat JSON so stream SQL engines can read them: ``bucket``, ``key`` (decoded),
``verdict``, ``action`` and ``mode`` are top-level. No record ever holds key material. They are
published through the engine's :class:`~enforcer.engine.ports.RecordSink` port.

The models are the contract (``schemas/`` is generated from them) and validate every record
built; :func:`encode_record` writes one as JSON with msgspec, the same JSON pydantic's
``model_dump_json`` writes at a fraction of the CPU (``tests/unit/test_record_encoding.py``
compares the two on generated records).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from datetime import datetime

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from enforcer import __version__
from enforcer.core.events import IgnoredRecord, ObjectEvent
from enforcer.core.policy import Mode, RequiredKey, effective_mode
from enforcer.core.verdict import Action, Verdict
from enforcer.engine.objects import ObjectSnapshot
from enforcer.engine.outcome import Outcome

AUDIT_SCHEMA_VERSION = 2
DLQ_SCHEMA_VERSION = 2


class AuditRecord(BaseModel):
    """One per handled event (and per ignored record), keyed ``bucket/object`` on Kafka.

    No write without an audit trail: before every rewrite the enforcer publishes, and waits for
    the broker to acknowledge, an *intent* record — action ``rewriting``, same ``event_id``, the
    source ``version_id``/``observed_etag`` it is about to replace. The event's final record
    follows. If the process dies between the write and the final record, the event is handled
    again and finds the object compliant (action ``none``); the intent record before it says the
    enforcer wrote it. So an object was re-encrypted by the enforcer if it has a ``reencrypted``
    record, or a ``rewriting`` record followed by a ``compliant`` one for the same event.

    The purge of the old version after a successful rewrite: when the store refuses it, the
    record keeps action ``reencrypted`` with the new version and says what failed in
    ``post_rewrite_error``, ending "not retried: the next enforcer scan --versions finds the
    version". When it fails because the store is unavailable, the event is not finished: it
    waits out the outage (and, after a restart, is delivered again) and its next round finds
    the object compliant and purges the version the event names; its one final record is then
    ``compliant``/``none`` with ``purged_version_id`` and a reason saying so. The notification
    of the rewrite itself also tries a failed purge again.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = AUDIT_SCHEMA_VERSION
    event_id: str
    event_name: str | None = None
    bucket: str
    key: str = Field(description="Object key, decoded")
    version_id: str | None = None
    observed_sse: str | None = Field(
        default=None, description="none | AES256 | aws:kms | aws:kms:dsse | sse-c | envelope"
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
        "...; not retried: the next enforcer scan --versions finds the version'); action stays "
        "reencrypted. A purge that fails because the store is unavailable is not recorded "
        "here: the event is handled again until the purge is done. On the record of a purge "
        "tried again (the rewrite's own notification, or the event's next round): it failed "
        "again",
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


_ENCODER = msgspec.json.Encoder()


def encode_record(record: AuditRecord | DeadLetterRecord) -> bytes:
    """``record`` as JSON bytes: what ``record.model_dump_json()`` writes (the field values are
    validated already; enums are written as their values, datetimes in RFC 3339)."""
    return _ENCODER.encode(record.__dict__)


def audit_record(
    event: ObjectEvent,
    outcome: Outcome,
    *,
    default_mode: Mode,
    duration: float,
    trace_id: str,
    now: datetime,
    failure: str | None = None,
) -> AuditRecord:
    """The audit record of one handled event, in the effective mode (audit wins).

    ``duration``: seconds the handling took; ``trace_id``: the trace it ran in; ``failure``
    turns the record into action ``failed`` with that reason.
    """
    if failure is not None:  # keeps ``written``: a failure after the write names the new version
        outcome = replace(outcome, action=Action.FAILED, reason=failure, notes=[])
    observed, required, written = outcome.observed, outcome.required, outcome.written
    mode = effective_mode(default_mode, required.mode if required else None)
    reason = outcome.reason or ("; ".join(outcome.notes) if outcome.notes else None)
    return AuditRecord(
        event_id=event.event_id,
        event_name=event.event_name,
        bucket=event.bucket,
        key=event.key,
        version_id=(observed.version_id if observed else None) or event.version_id,
        observed_sse=observed.encryption.value if observed else None,
        observed_kms_key=observed.kms_key if observed else None,
        observed_etag=observed.etag or None if observed else None,
        required_key=required.key if required else None,
        rule_source=required.source if required else None,
        verdict=outcome.verdict,
        action=outcome.action,
        reason=reason,
        new_version_id=written.version_id if written else None,
        new_etag=written.etag if written else None,
        key_used=required.key if written and required else None,
        purged_version_id=outcome.purged_version_id,
        post_rewrite_error=outcome.post_rewrite_error,
        strategy=required.strategy.value if required else None,
        attempts=outcome.attempts,
        duration_ms=round(duration * 1000, 3),
        trace_id=trace_id,
        mode=mode.value,
        timestamp=now,
        enforcer_version=__version__,
    )


def intent_record(
    event: ObjectEvent,
    snapshot: ObjectSnapshot,
    required: RequiredKey,
    verdict: Verdict | None,
    *,
    default_mode: Mode,
    trace_id: str,
    now: datetime,
) -> AuditRecord:
    """The intent record published before a rewrite of ``snapshot`` under ``required``."""
    outcome = Outcome(
        verdict=verdict, action=Action.REWRITING, required=required, observed=snapshot
    )
    return audit_record(event, outcome, default_mode=default_mode, duration=0.0,
                        trace_id=trace_id, now=now)  # fmt: skip


def audit_for_ignored(
    record: IgnoredRecord, *, mode: str, trace_id: str, now: datetime
) -> AuditRecord:
    return AuditRecord(
        event_id=record.event_id,
        event_name=record.event_name,
        bucket=record.bucket,
        key=record.key,
        action=Action.SKIPPED,
        reason=record.reason,
        duration_ms=0.0,
        trace_id=trace_id,
        mode=mode,
        timestamp=now,
        enforcer_version=__version__,
    )


#: The most a dead-letter record carries of the original value, encoded (text or base64); a
#: record stays far below the broker's 1 MiB default however the payload escapes.
DLQ_PAYLOAD_LIMIT = 256 * 1024
#: The most it carries of the original Kafka key (S3 keys are at most 1024 bytes).
DLQ_KEY_LIMIT = 2048


def dead_letter(
    value: bytes | None,
    key: bytes | None,
    *,
    topic: str,
    partition: int,
    offset: int,
    error_class: str,
    reason: str,
    attempts: int,
    first_seen: datetime,
    last_seen: datetime,
    event_id: str | None = None,
    payload_limit: int = DLQ_PAYLOAD_LIMIT,
) -> DeadLetterRecord:
    """The dead-letter record of one Kafka record; a value or key too large to carry is cut,
    keeping the value's length and SHA-256 so the original can still be found."""
    payload, encoding, payload_cut = _carried(value, payload_limit)
    original_key, _, key_cut = _carried(key, DLQ_KEY_LIMIT)
    return DeadLetterRecord(
        original_payload=payload,
        payload_encoding=encoding,
        original_key=original_key,
        truncated=payload_cut or key_cut,
        original_length=len(value) if value is not None else None,
        original_sha256=hashlib.sha256(value).hexdigest() if value is not None else None,
        topic=topic,
        partition=partition,
        offset=offset,
        error_class=error_class,
        reason=reason[:2000],
        attempts=attempts,
        first_seen=first_seen,
        last_seen=last_seen,
        event_id=event_id,
        enforcer_version=__version__,
    )


def _carried(value: bytes | None, limit: int) -> tuple[str | None, str, bool]:
    """(text, encoding, cut): UTF-8 text if it is and fits as JSON, else base64 of as much as
    fits."""
    if value is None:
        return None, "utf-8", False
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and len(json.dumps(text)) <= limit:
        return text, "utf-8", False
    fitting = limit // 4 * 3  # base64 makes 4 characters of every 3 bytes
    return base64.b64encode(value[:fitting]).decode(), "base64", len(value) > fitting


def without_payload(record: DeadLetterRecord) -> DeadLetterRecord:
    """The same record with the payload dropped (the broker refused even the cut one)."""
    return record.model_copy(update={"original_payload": None, "truncated": True})


#: Action of an object ``enforcer scan --enqueue`` handed to the service instead of handling.
ENQUEUED = "enqueued"
#: ``event_name`` of a scan's record about a non-current version (``scan --versions``).
NONCURRENT_EVENT = "scan:version"


class ScanLine(BaseModel):
    """Where one object (version) stands after a scan looked at it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    bucket: str
    key: str
    version_id: str | None = None
    is_latest: bool = True
    observed_sse: str | None = None
    observed_kms_key: str | None = None
    required_key: str | None = None
    verdict: str | None = None
    action: str
    reason: str | None = None
    mode: str | None = None
    event_name: str | None = None
    source: str | None = None  # listing | inventory | head (scan lines only)
    timestamp: datetime

    @classmethod
    def from_audit(cls, record: AuditRecord, *, source: str, is_latest: bool = True) -> ScanLine:
        return cls.model_construct(  # the record is validated already: no second pass
            bucket=record.bucket,
            key=record.key,
            version_id=record.version_id,
            is_latest=is_latest,
            observed_sse=record.observed_sse,
            observed_kms_key=record.observed_kms_key,
            required_key=record.required_key,
            verdict=record.verdict.value if record.verdict else None,
            action=record.action.value,
            reason=record.reason,
            mode=record.mode,
            event_name=record.event_name,
            source=source,
            timestamp=record.timestamp,
        )
