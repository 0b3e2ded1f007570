"""SQS message bodies → the Kafka records the enforcer reads (pure).

What arrives on the queue, and what is produced for it:

- an S3 event notification (S3 → SQS): ``{"Records": [...]}``. Each record becomes one Kafka
  record ``{"Records": [record]}`` (a one-record body, what S3 sends, goes unchanged), keyed
  ``bucket/object`` with the object key decoded exactly as the enforcer decodes it;
- an EventBridge event (an EventBridge rule with an SQS target, no input transformer):
  unchanged, keyed the same way;
- either of those wrapped by SNS (S3 → SNS → SQS without raw message delivery): unwrapped first,
  and the inner message produced;
- S3's ``s3:TestEvent`` (sent when a bucket's notification configuration is saved), or a
  notification with no records: nothing is produced and the message is deleted;
- anything else — not JSON, not an S3 event, a record the enforcer cannot read: produced
  **unchanged and without a key**, so the enforcer dead-letters it (``bad_event``) with the
  original payload. Nothing is lost, and unreadable input ends in one place, the enforcer's
  dead-letter topic, whatever the queue's redrive policy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from enforcer.core.events import parse_message
from enforcer.errors import BadEvent

#: S3 → SNS → SQS wraps once; a fan-out through a second topic twice. Deeper is not unwrapped.
MAX_SNS_DEPTH = 2
TEST_EVENT = "s3:TestEvent"


@dataclass(frozen=True)
class KafkaRecord:
    """One record to produce. ``key`` None: not an event the enforcer can read (it goes to the
    dead-letter topic with its payload)."""

    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Forwarding:
    """What one SQS message becomes: the records to produce, and a note when it is skipped or
    produced as-is."""

    records: tuple[KafkaRecord, ...] = ()
    note: str | None = None

    @property
    def result(self) -> str:
        """``forwarded``, ``unreadable`` (some record produced as-is) or ``skipped``."""
        if not self.records:
            return "skipped"
        return "unreadable" if any(r.key is None for r in self.records) else "forwarded"


def translate(body: str) -> Forwarding:
    """The Kafka records for one SQS message body (never raises)."""
    document = _json_object(body)
    for _ in range(MAX_SNS_DEPTH):
        if document is None or not _is_sns_notification(document):
            break
        body = document["Message"]
        document = _json_object(body)
    if document is None:
        return _as_is(body, "not a JSON object")
    if document.get("Event") == TEST_EVENT:
        return Forwarding(note="S3 test event")
    if "detail-type" in document:
        return _events([body])
    if "Records" not in document:
        return _as_is(body, "neither an S3 notification nor an EventBridge event")
    return _notification(body, document["Records"])


def _notification(body: str, records: Any) -> Forwarding:
    """One Kafka record per S3 record; a one-record body (what S3 sends) goes unchanged."""
    if isinstance(records, list) and not records:
        return Forwarding(note="S3 notification without records")
    if isinstance(records, list) and len(records) > 1:
        return _events([json.dumps({"Records": [record]}) for record in records])
    return _events([body])


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _is_sns_notification(document: dict[str, Any]) -> bool:
    return (
        document.get("Type") == "Notification"
        and "TopicArn" in document
        and isinstance(document.get("Message"), str)
    )


def _events(values: list[str]) -> Forwarding:
    records, notes = [], []
    for value in values:
        key, problem = _kafka_key(value)
        records.append(KafkaRecord(key, _bytes(value)))
        if problem:
            notes.append(problem)
    return Forwarding(tuple(records), "; ".join(notes) or None)


def _kafka_key(value: str) -> tuple[bytes | None, str | None]:
    """``bucket/object`` as the enforcer will parse it, or (None, why it cannot)."""
    try:
        [parsed] = parse_message(_bytes(value))
    except BadEvent as exc:
        return None, str(exc)
    except ValueError:  # not exactly one record
        return None, "expected exactly one record"
    return f"{parsed.bucket}/{parsed.key}".encode(), None


def _as_is(body: str, why: str) -> Forwarding:
    return Forwarding((KafkaRecord(None, _bytes(body)),), why)


def _bytes(text: str) -> bytes:
    # SQS bodies are Unicode text; a lone surrogate survives as bytes the enforcer rejects.
    return text.encode("utf-8", "surrogatepass")
