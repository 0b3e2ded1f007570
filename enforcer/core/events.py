"""Kafka record bytes → typed object events (pure).

Three input shapes (docs/contract.md): MinIO's Kafka target ``{"EventName","Key","Records"}``, plain
AWS S3 notifications ``{"Records"}`` and EventBridge ``{"detail-type": "Object Created", ...}``.
Unknown extra fields are tolerated; a record that is not an object-created event is *ignored* with a
reason (it still gets an audit record); anything unreadable raises :class:`BadEvent`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from enforcer.errors import BadEvent

SourceFormat = Literal["minio", "s3", "eventbridge"]


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


# ---------------------------------------------------------------- input shapes (for schemas/)


class S3ObjectInfo(_Tolerant):
    key: str = Field(min_length=1)
    size: int | None = None
    e_tag: str | None = Field(default=None, alias="eTag")
    version_id: str | None = Field(default=None, alias="versionId")
    sequencer: str | None = None


class S3BucketInfo(_Tolerant):
    name: str = Field(min_length=1)


class S3Entity(_Tolerant):
    bucket: S3BucketInfo
    object: S3ObjectInfo


class S3Record(_Tolerant):
    """One entry of ``Records[]`` (MinIO and AWS S3 share it)."""

    event_name: str = Field(alias="eventName")
    event_time: datetime | None = Field(default=None, alias="eventTime")
    event_source: str | None = Field(default=None, alias="eventSource")
    response_elements: dict[str, str] | None = Field(default=None, alias="responseElements")
    s3: S3Entity


class S3Notification(_Tolerant):
    """AWS S3 notification; MinIO's Kafka message adds ``EventName`` and ``Key``."""

    event_name: str | None = Field(default=None, alias="EventName")
    key: str | None = Field(default=None, alias="Key")
    records: list[S3Record] = Field(alias="Records")


class EventBridgeObject(_Tolerant):
    key: str = Field(min_length=1)
    size: int | None = None
    etag: str | None = None
    version_id: str | None = Field(default=None, alias="version-id")
    sequencer: str | None = None


class EventBridgeDetail(_Tolerant):
    bucket: S3BucketInfo
    object: EventBridgeObject


class EventBridgeEvent(_Tolerant):
    id: str | None = None
    detail_type: str = Field(alias="detail-type")
    time: datetime | None = None
    detail: EventBridgeDetail


# ---------------------------------------------------------------- what the pipeline sees


class ObjectEvent(_Tolerant):
    """A new object (version) to check. ``key`` is decoded."""

    event_id: str
    event_name: str
    event_time: datetime | None = None
    bucket: str
    key: str
    version_id: str | None = None
    size: int | None = None
    etag: str | None = None
    source_format: SourceFormat


class IgnoredRecord(_Tolerant):
    """A well-formed record the enforcer does not act on (audited as ``skipped``)."""

    event_id: str
    event_name: str
    bucket: str
    key: str
    reason: str


ParsedRecord = ObjectEvent | IgnoredRecord


def parse_message(value: bytes | None) -> list[ParsedRecord]:
    """Parse one Kafka record value into the events it carries, in order."""
    document = _load_json(value)
    if "detail-type" in document:
        return [_from_eventbridge(document)]
    if "Records" in document:
        return _from_notification(document)
    if document.get("Event") == "s3:TestEvent":
        return []
    raise BadEvent("not an S3 notification: no 'Records' and no 'detail-type'")


def is_object_created(event_name: str) -> bool:
    """``s3:ObjectCreated:*`` (MinIO) or ``ObjectCreated:*`` (AWS)."""
    return event_name.removeprefix("s3:").startswith("ObjectCreated:")


def _load_json(value: bytes | None) -> dict[str, Any]:
    if not value:
        raise BadEvent("empty message")
    try:
        document = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadEvent(f"message is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise BadEvent(f"message is a JSON {type(document).__name__}, expected an object")
    return document


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}"


def _from_notification(document: dict[str, Any]) -> list[ParsedRecord]:
    try:
        notification = S3Notification.model_validate(document)
    except ValidationError as exc:
        raise BadEvent(f"malformed S3 notification at {_describe(exc)}") from exc
    source: SourceFormat = "minio" if notification.event_name is not None else "s3"
    return [_from_record(record, source) for record in notification.records]


def _from_record(record: S3Record, source: SourceFormat) -> ParsedRecord:
    obj = record.s3.object
    request_id = (record.response_elements or {}).get("x-amz-request-id", "")
    return _parsed(
        created=is_object_created(record.event_name),
        event_id=None,
        marker=obj.sequencer or request_id,
        event_name=record.event_name,
        event_time=record.event_time,
        bucket=record.s3.bucket.name,
        raw_key=obj.key,
        version_id=obj.version_id,
        size=obj.size,
        etag=obj.e_tag,
        source_format=source,
    )


def _from_eventbridge(document: dict[str, Any]) -> ParsedRecord:
    try:
        event = EventBridgeEvent.model_validate(document)
    except ValidationError as exc:
        raise BadEvent(f"malformed EventBridge event at {_describe(exc)}") from exc
    obj = event.detail.object
    return _parsed(
        created=event.detail_type == "Object Created",
        event_id=event.id,
        marker=obj.sequencer,
        event_name=event.detail_type,
        event_time=event.time,
        bucket=event.detail.bucket.name,
        raw_key=obj.key,
        version_id=obj.version_id,
        size=obj.size,
        etag=obj.etag,
        source_format="eventbridge",
    )


def _parsed(
    *,
    created: bool,
    event_id: str | None,
    marker: str | None,
    event_name: str,
    event_time: datetime | None,
    bucket: str,
    raw_key: str,
    version_id: str | None,
    size: int | None,
    etag: str | None,
    source_format: SourceFormat,
) -> ParsedRecord:
    """One record of any shape → the event to check, or the reason it is ignored."""
    key = unquote_plus(raw_key)  # keys are URL-query-escaped: '+' is a space, '%2B' a plus
    event_id = event_id or _event_id(bucket, key, version_id, marker, event_name)
    if not created:
        return IgnoredRecord(
            event_id=event_id,
            event_name=event_name,
            bucket=bucket,
            key=key,
            reason=f"{event_name!r} is not an object-created event",
        )
    return ObjectEvent(
        event_id=event_id,
        event_name=event_name,
        event_time=event_time,
        bucket=bucket,
        key=key,
        version_id=version_id or None,
        size=size,
        etag=etag,
        source_format=source_format,
    )


def _event_id(bucket: str, key: str, version: str | None, marker: str | None, name: str) -> str:
    """A stable id for events that carry none, so re-deliveries audit under the same id."""
    material = "\x00".join((bucket, key, version or "", marker or "", name))
    return hashlib.sha256(material.encode()).hexdigest()[:32]
