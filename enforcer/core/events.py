"""Kafka record bytes → typed object events (pure).

Three input shapes (docs/contract.md): MinIO's Kafka target ``{"EventName","Key","Records"}``,
plain AWS S3 notifications ``{"Records"}`` and EventBridge ``{"detail-type": "Object Created"}``.
Unknown extra fields are tolerated; a record that is not an object-created event is *ignored*
with a reason (it still gets an audit record). Anything else — any byte sequence at all: invalid
UTF-8, nesting deep enough to exhaust the interpreter's stack, numbers too long to convert, a
bucket name no S3 store accepts, a key that cannot exist — raises :class:`BadEvent` with a short
reason, and nothing else (the property tests feed it arbitrary bytes).

The pydantic models below are the contract (``schemas/`` is generated from them) and the arbiter:
the common shape is read by the msgspec decoder of :mod:`enforcer.core.wire`, which hands
anything it is not sure about back to the models, so both read every input alike.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote_plus, unquote_plus

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from enforcer.core.wire import WireNotification, WireRecord, decode_notification
from enforcer.errors import BadEvent, describe_validation

SourceFormat = Literal["minio", "s3", "eventbridge"]

#: The widest bucket name any S3 API accepts (botocore's client-side check; AWS legacy names
#: allow upper case and '_'). Anything else cannot name a bucket: a bad event, not a request.
BUCKET_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")
#: S3 object keys are at most 1024 bytes of UTF-8.
MAX_KEY_BYTES = 1024
#: ``eventSource`` and ``eventName`` of the events ``enforcer scan --enqueue`` publishes: MinIO's
#: Kafka message shape, so the service reads them like any other object-created event.
BACKFILL_EVENT_SOURCE = "enforcer:backfill"
BACKFILL_EVENT_NAME = "s3:ObjectCreated:Backfill"


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
    """Parse one Kafka record value into the events it carries, in order.

    Raises :class:`BadEvent` for anything that is not a readable S3 notification, and no other
    exception, whatever the bytes.
    """
    if value and (notification := decode_notification(value)) is not None:
        try:
            return _from_wire(notification)
        except ValidationError:  # an eventTime the models refuse: let them say why
            pass
    return parse_with_models(value)


def parse_with_models(value: bytes | None) -> list[ParsedRecord]:
    """:func:`parse_message` through the pydantic models alone (the reference the fast decoder
    is tested against)."""
    document = _load_json(value)
    try:
        if "detail-type" in document:
            return [_from_eventbridge(document)]
        if "Records" in document:
            return _from_notification(document)
    except RecursionError:  # a validator walking a pathological document
        raise BadEvent("message nests too deeply to read") from None
    if document.get("Event") == "s3:TestEvent":
        return []
    raise BadEvent("not an S3 notification: no 'Records' and no 'detail-type'")


def is_object_created(event_name: str) -> bool:
    """``s3:ObjectCreated:*`` (MinIO) or ``ObjectCreated:*`` (AWS)."""
    return event_name.removeprefix("s3:").startswith("ObjectCreated:")


def check_object_name(bucket: str, key: str) -> None:
    """Raise :class:`BadEvent` unless ``bucket``/``key`` could name an object on some S3 store.

    Names a particular store refuses beyond this (MinIO: ``..`` or empty path segments) are that
    store's answer to give; the storage adapter reports it as a bad event too.
    """
    if not BUCKET_NAME.fullmatch(bucket):
        raise BadEvent(f"invalid bucket name {_shorten(bucket)!r}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadEvent(f"object key is not valid Unicode: {_shorten(key)!r}") from None
    if size > MAX_KEY_BYTES:
        raise BadEvent(f"object key is {size} bytes, over the {MAX_KEY_BYTES}-byte S3 limit")
    if "\x00" in key:
        raise BadEvent(f"object key contains a NUL character: {_shorten(key)!r}")


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _load_json(value: bytes | None) -> dict[str, Any]:
    if not value:
        raise BadEvent("empty message")
    try:
        document = json.loads(value)
    except UnicodeDecodeError:
        raise BadEvent("message is not JSON: not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise BadEvent(f"message is not JSON: {exc.msg} at byte {exc.pos}") from None
    except RecursionError:
        raise BadEvent("message is not readable JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise BadEvent(f"message is not readable JSON: {str(exc)[:120]}") from None
    if not isinstance(document, dict):
        raise BadEvent(f"message is a JSON {type(document).__name__}, expected an object")
    return document


def _describe(exc: ValidationError) -> str:
    where, message = describe_validation(exc)
    return f"{where}: {message}"


def _from_notification(document: dict[str, Any]) -> list[ParsedRecord]:
    try:
        notification = S3Notification.model_validate(document)
    except ValidationError as exc:
        raise BadEvent(f"malformed S3 notification at {_describe(exc)}") from None
    source: SourceFormat = "minio" if notification.event_name is not None else "s3"
    return _from_records(source, ((record, record.event_time) for record in notification.records))


_EVENT_TIME: TypeAdapter[datetime | None] = TypeAdapter(datetime | None)


def _from_wire(notification: WireNotification) -> list[ParsedRecord]:
    """The records the fast decoder read, made into events exactly as the models' would be."""
    source: SourceFormat = "minio" if notification.event_name is not None else "s3"
    timed = ((r, _EVENT_TIME.validate_python(r.event_time)) for r in notification.records)
    return _from_records(source, timed)  # (a time the models refuse raises ValidationError)


def _from_records(
    source: SourceFormat, records: Iterable[tuple[S3Record | WireRecord, datetime | None]]
) -> list[ParsedRecord]:
    """Each record, with its event time, as an event; a bad one is named by its index."""
    parsed = []
    for index, (record, event_time) in enumerate(records):
        try:
            parsed.append(_from_record(record, source, event_time))
        except BadEvent as exc:
            raise BadEvent(f"Records.{index}: {exc}") from None
    return parsed


def _from_record(
    record: S3Record | WireRecord, source: SourceFormat, event_time: datetime | None
) -> ParsedRecord:
    obj = record.s3.object
    request_id = (record.response_elements or {}).get("x-amz-request-id", "")
    return _parsed(
        created=is_object_created(record.event_name),
        event_id=None,
        marker=obj.sequencer or request_id,
        event_name=record.event_name,
        event_time=event_time,
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
        raise BadEvent(f"malformed EventBridge event at {_describe(exc)}") from None
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
    check_object_name(bucket, key)
    _check_text(event_id, marker, event_name, version_id, etag)
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


def _check_text(*values: str | None) -> None:
    """Every string an event carries on must be encodable (JSON allows lone surrogates)."""
    for value in values:
        if value is None:
            continue
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadEvent(f"text is not valid Unicode: {_shorten(value)!r}") from None


def _event_id(bucket: str, key: str, version: str | None, marker: str | None, name: str) -> str:
    """A stable id for events that carry none, so re-deliveries audit under the same id."""
    material = "\x00".join((bucket, key, version or "", marker or "", name))
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def backfill_message(
    bucket: str, key: str, *, etag: str, size: int, run_id: str, when: datetime
) -> tuple[bytes, bytes]:
    """The (Kafka key, value) of a backfill event for one object, shaped like MinIO's own
    messages: keyed ``bucket/key``, the record's object key URL-query-escaped, and ``run_id`` as
    the sequencer so each scan run's events get their own ids."""
    record = {
        "eventVersion": "2.0",
        "eventSource": BACKFILL_EVENT_SOURCE,
        "eventName": BACKFILL_EVENT_NAME,
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": quote_plus(key, safe=""),
                "size": size,
                "eTag": etag.strip('"'),
                "sequencer": run_id,
            },
        },
    }
    value = {"EventName": BACKFILL_EVENT_NAME, "Key": f"{bucket}/{key}", "Records": [record]}
    return f"{bucket}/{key}".encode(), json.dumps(value).encode()
