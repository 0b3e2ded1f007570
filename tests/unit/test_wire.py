"""The fast decoder reads every input exactly as the pydantic models do.

``parse_message`` reads the common shape with msgspec (:mod:`enforcer.core.wire`) and leaves
everything else to the models (``parse_with_models``). Whatever the bytes, both must give the
same events or the same ``BadEvent``; and the well-formed notifications the service lives on
must really take the fast path (else the parity would hold trivially).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_events_hostile import _json, _shaped

from enforcer.core.events import ParsedRecord, parse_message, parse_with_models
from enforcer.core.wire import decode_notification
from enforcer.errors import BadEvent

SAMPLE = Path(__file__).parent.parent / "data" / "minio-put-event.json"


def outcome(parse: Any, value: bytes) -> list[ParsedRecord] | str:
    try:
        return list(parse(value))
    except BadEvent as exc:
        return f"BadEvent: {exc}"


def assert_same(value: bytes) -> None:
    assert outcome(parse_message, value) == outcome(parse_with_models, value)


_text = st.text(max_size=12) | st.sampled_from(["", "s3:ObjectCreated:Put", "a+b%2Fc", "é"])
_scalar = st.none() | st.booleans() | st.integers() | st.floats() | _text
_time = st.none() | st.sampled_from(
    ["2026-11-26T21:14:03.512Z", "2026-11-26T21:14:03+01:00", "2026-11-26", "1700000000",
     "2026-11-26T21:14:03.1234567Z", "26/11/2026", "2026-13-01T00:00:00Z"]
) | st.integers() | _text  # fmt: skip


def _maybe(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict with any subset of ``fields``."""
    return st.fixed_dictionaries({}, optional=fields)


_object = _maybe(key=_text | _scalar, size=st.integers() | _scalar, eTag=_scalar,
                 versionId=_scalar, sequencer=_scalar, e_tag=_scalar, version_id=_scalar,
                 contentType=_scalar)  # fmt: skip
_record = _maybe(
    eventName=st.sampled_from(["s3:ObjectCreated:Put", "ObjectCreated:Copy",
                               "s3:ObjectRemoved:Delete"]) | _scalar,
    eventTime=_time, eventSource=_scalar, event_name=_scalar, event_time=_time,
    responseElements=st.none() | st.dictionaries(_text, _text | st.integers(), max_size=2),
    s3=_maybe(bucket=_maybe(name=st.sampled_from(["bkt", "a.b-c", "../x", ""]) | _scalar),
              object=_object) | _scalar,
)  # fmt: skip
_notification = _maybe(
    Records=st.lists(_record, max_size=3) | _scalar,
    EventName=_scalar, Key=_scalar, key=_scalar, records=st.lists(_record, max_size=1),
    Event=st.just("s3:TestEvent"), **{"detail-type": st.just("Object Created")},
)  # fmt: skip


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(_notification)
def test_notification_like_documents_read_alike(document: dict[str, Any]) -> None:
    assert_same(json.dumps(document).encode())


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_json | _shaped)
def test_any_json_reads_alike(document: object) -> None:
    assert_same(json.dumps(document).encode())


@settings(max_examples=300)
@given(st.binary(max_size=512))
def test_any_bytes_read_alike(value: bytes) -> None:
    assert_same(value)


def _good(key: str = "k", bucket: str = "bkt", **extra: object) -> dict[str, Any]:
    entity = {"bucket": {"name": bucket}, "object": {"key": key, "size": 3, **extra}}
    return {"eventName": "s3:ObjectCreated:Put", "eventTime": "2026-11-26T21:14:03.512Z",
            "s3": entity}  # fmt: skip


@settings(max_examples=300)
@given(st.lists(st.tuples(st.text(min_size=1), st.text(min_size=1)), min_size=1, max_size=4))
def test_well_formed_notifications_take_the_fast_path(names: list[tuple[str, str]]) -> None:
    value = json.dumps({"Records": [_good(key, bucket) for bucket, key in names]}).encode()
    assert decode_notification(value) is not None
    assert_same(value)


@pytest.mark.parametrize(
    "value",
    [
        SAMPLE.read_bytes(),
        json.dumps({"Records": [_good(), _good("k2", versionId="v1", eTag="e")]}).encode(),
        json.dumps({"EventName": "s3:ObjectCreated:Put", "Records": [_good("a%2Bb+c")]}).encode(),
        json.dumps({"Records": [_good(bucket="../etc")]}).encode(),  # bad, read alike
        json.dumps({"Records": [_good(key="%00")]}).encode(),
    ],
)
def test_the_common_shape_takes_the_fast_path(value: bytes) -> None:
    assert decode_notification(value) is not None
    assert_same(value)


@pytest.mark.parametrize(
    "value",
    [
        b'{"Records": [], "x": "\xff"}',  # not UTF-8 in a field nobody reads: json.loads refuses
        b'{"Records": [], "x": ' + b"9" * 5000 + b"}",  # more digits than Python converts
        b'{"Records": [], "x": ' + b"[" * 950 + b"]" * 950 + b"}",  # near the recursion limit
        b'{"Records": [], "x": NaN}',
        b'\xef\xbb\xbf{"Records": []}',  # json.loads reads a UTF-8 BOM
        json.dumps({"Records": [_good(e_tag="py-name")]}).encode(),  # pydantic reads it too
        json.dumps({"Records": [_good() | {"event_time": "2026-01-01T00:00:00Z"}]}).encode(),
        json.dumps({"records": [], "Records": [_good()]}).encode(),
        json.dumps({"Records": [_good()], "detail-type": "Object Created"}).encode(),
        json.dumps({"Records": [_good(size="3")]}).encode(),  # coerced by the models
        json.dumps({"Records": [_good() | {"eventTime": 1700000000}]}).encode(),
        json.dumps({"Records": [_good() | {"eventTime": "not a time"}]}).encode(),
    ],
)
def test_anything_unusual_is_left_to_the_models(value: bytes) -> None:
    assert_same(value)
    if b"eventTime" not in value:
        assert decode_notification(value) is None
