"""The hot path's decoder of S3 notifications: msgspec, typed, no intermediate dicts (pure).

Almost every message the service reads is one shape: MinIO's or AWS S3's ``{"Records": [...]}``,
well formed. :func:`decode_notification` reads that shape straight into typed structs, several
times cheaper than ``json.loads`` followed by pydantic. It never decides that a message is bad:
anything it is not sure to read exactly as the pydantic models of :mod:`enforcer.core.events`
would is handed back as ``None``, and the events module then parses it with those models, the
arbiter. So the fast path can only accept what the models accept, with the same values
(``tests/unit/test_wire.py`` checks that on generated and hostile input):

* JSON that ``json.loads`` would refuse and msgspec would not: bytes that are not UTF-8 inside a
  skipped field, an integer longer than Python converts, nesting near the interpreter's limit —
  screened before decoding (non-ASCII input is decoded once; long digit runs and many brackets
  go to the models);
* a field the models would read under its Python name (``populate_by_name``: ``event_name``
  for ``eventName``...), EventBridge's ``detail-type``, and a type the models would coerce (a
  size written as a string, a time as a number): left to the models;
* ``eventTime`` stays text here; the events module reads it with pydantic's own datetime
  validator.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated

import msgspec

_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
#: Fields the pydantic models also read under their Python names; present means: not for us.
_Unset = msgspec.UnsetType
_UNSET = msgspec.UNSET


class WireObject(msgspec.Struct, frozen=True):
    key: _NonEmpty
    size: int | None = None
    e_tag: str | None = msgspec.field(default=None, name="eTag")
    version_id: str | None = msgspec.field(default=None, name="versionId")
    sequencer: str | None = None
    # The models' Python names: present, the models would read them.
    py_e_tag: msgspec.Raw | _Unset = msgspec.field(default=_UNSET, name="e_tag")
    py_version_id: msgspec.Raw | _Unset = msgspec.field(default=_UNSET, name="version_id")


class WireBucket(msgspec.Struct, frozen=True):
    name: _NonEmpty


class WireEntity(msgspec.Struct, frozen=True):
    bucket: WireBucket
    object: WireObject


class WireRecord(msgspec.Struct, frozen=True):
    event_name: str = msgspec.field(name="eventName")
    s3: WireEntity
    event_time: str | None = msgspec.field(default=None, name="eventTime")
    event_source: str | None = msgspec.field(default=None, name="eventSource")
    response_elements: dict[str, str] | None = msgspec.field(default=None, name="responseElements")
    py_event_name: msgspec.Raw | _Unset = msgspec.field(default=_UNSET, name="event_name")
    py_event_time: msgspec.Raw | _Unset = msgspec.field(default=_UNSET, name="event_time")
    py_event_source: msgspec.Raw | _Unset = msgspec.field(default=_UNSET, name="event_source")
    py_response: msgspec.Raw | _Unset = msgspec.field(default=_UNSET, name="response_elements")

    @property
    def plain(self) -> bool:
        """No field the models would read under its Python name."""
        obj = self.s3.object
        return (
            self.py_event_name is _UNSET
            and self.py_event_time is _UNSET
            and self.py_event_source is _UNSET
            and self.py_response is _UNSET
            and obj.py_e_tag is _UNSET
            and obj.py_version_id is _UNSET
        )


class WireNotification(msgspec.Struct, frozen=True):
    """MinIO's Kafka message (``EventName``, ``Key``) or a plain AWS S3 notification."""

    records: list[WireRecord] = msgspec.field(name="Records")
    event_name: str | None = msgspec.field(default=None, name="EventName")
    key: str | None = msgspec.field(default=None, name="Key")
    detail_type: msgspec.Raw | _Unset = msgspec.field(default=_UNSET, name="detail-type")
    py_event_name: msgspec.Raw | _Unset = msgspec.field(default=_UNSET, name="event_name")
    py_key: msgspec.Raw | _Unset = msgspec.field(default=_UNSET, name="key")
    py_records: msgspec.Raw | _Unset = msgspec.field(default=_UNSET, name="records")

    @property
    def plain(self) -> bool:
        return (
            self.detail_type is _UNSET
            and self.py_event_name is _UNSET
            and self.py_key is _UNSET
            and self.py_records is _UNSET
            and all(record.plain for record in self.records)
        )


_DECODER = msgspec.json.Decoder(WireNotification)
#: Brackets a message may hold before its nesting could come near the interpreter's limit.
_MAX_BRACKETS = 256


def _digits_limit() -> re.Pattern[bytes] | None:
    limit = sys.get_int_max_str_digits()
    return re.compile(rb"[0-9]{%d}" % (limit + 1)) if limit else None


_TOO_MANY_DIGITS = _digits_limit()


def decode_notification(value: bytes) -> WireNotification | None:
    """The notification in ``value``, or None when the pydantic models must read it (any other
    shape, anything unusual, anything bad)."""
    if not value.isascii():
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if value.count(b"[") + value.count(b"{") > _MAX_BRACKETS:
        return None
    if _TOO_MANY_DIGITS is not None and _TOO_MANY_DIGITS.search(value):
        return None
    try:
        notification = _DECODER.decode(value)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return None
    return notification if notification.plain else None
