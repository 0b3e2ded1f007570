"""The parser against hostile input: any bytes end as events or BadEvent, never another error."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enforcer.core.events import MAX_KEY_BYTES, ObjectEvent, parse_message
from enforcer.errors import BadEvent
from enforcer.telemetry import context_from_headers


def notification(bucket: object = "bkt", key: object = "k", **record: object) -> bytes:
    entry = {
        "eventName": "s3:ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
        **record,
    }
    return json.dumps({"EventName": "s3:ObjectCreated:Put", "Records": [entry]}).encode()


def parse_or_bad(value: bytes) -> list[object] | BadEvent:
    try:
        return list(parse_message(value))
    except BadEvent as exc:
        error = exc
    assert str(error), "a bad event must say why"
    assert len(str(error)) < 1000, "the reason must stay short, whatever the input"
    return error


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
_names = st.sampled_from(
    ["Records", "detail-type", "detail", "s3", "bucket", "object", "key", "name", "eventName",
     "EventName", "Event", "versionId", "eTag"]
)  # fmt: skip
_shaped = st.recursive(
    st.none() | st.integers() | st.text(max_size=12) | st.just("s3:ObjectCreated:Put"),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_names, inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_any_bytes_parse_or_are_bad_events(value: bytes) -> None:
    parse_or_bad(value)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_json)
def test_any_json_document_parses_or_is_a_bad_event(document: object) -> None:
    parse_or_bad(json.dumps(document).encode())


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_shaped)
def test_notification_shaped_documents_parse_or_are_bad_events(document: object) -> None:
    parse_or_bad(json.dumps(document).encode())


@settings(max_examples=300)
@given(st.text(), st.text())
def test_any_names_give_an_event_only_if_the_store_could_hold_them(bucket: str, key: str) -> None:
    result = parse_or_bad(notification(bucket, key))
    if isinstance(result, BadEvent):
        return
    [event] = result
    assert isinstance(event, ObjectEvent)
    assert len(event.key.encode("utf-8")) <= MAX_KEY_BYTES
    assert "\x00" not in event.key
    event.model_dump_json()  # whatever was accepted can be written into an audit record


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nest"),
        (b'{"Records": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nest"),
        (b'{"Records": [], "x": ' + b"9" * 10_000 + b"}", "not readable JSON"),
        (b"\xff\xfe\xfa" * 1000, "not"),
        (b'{"Records": [\x01]}', "not JSON"),
        (b'{"Records": "\x00"}', "not JSON"),
        (bytes(range(256)) * 4000, "not"),
        (notification(bucket="../etc"), "invalid bucket name"),
        (notification(bucket="a/b"), "invalid bucket name"),
        (notification(bucket=""), "bucket"),
        (notification(key="%00etc"), "NUL"),
        (notification(key="k" * (MAX_KEY_BYTES + 1)), "1025 bytes"),
        (notification(key="\ud800"), "(?i)unicode"),
        (notification(eventName="\udfff"), "(?i)unicode"),
        (notification(key=["not", "a", "string"]), "key"),
        (json.dumps({"Records": {"0": 1}}).encode(), "Records"),
        (json.dumps({"detail-type": "Object Created", "detail": []}).encode(), "detail"),
        (json.dumps(["Records"]).encode(), "JSON list"),
    ],
)
def test_hostile_messages_are_bad_events_with_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(BadEvent, match=reason):
        parse_message(value)


def test_thousands_of_records_parse_in_order() -> None:
    records = [
        {"eventName": "s3:ObjectCreated:Put",
         "s3": {"bucket": {"name": "bkt"}, "object": {"key": f"k{i}"}}}
        for i in range(3000)
    ]  # fmt: skip
    parsed = parse_message(json.dumps({"Records": records}).encode())
    assert [e.key for e in parsed] == [f"k{i}" for i in range(3000)]


def test_a_key_at_the_limit_is_an_event() -> None:
    [event] = parse_message(notification(key="é" * (MAX_KEY_BYTES // 2)))
    assert isinstance(event, ObjectEvent)


@pytest.mark.parametrize(
    "headers",
    [
        {"empty": None},
        {"traceparent": b"00-\xff\xfe-zz-01"},
        {"traceparent": None, "tracestate": b"\x00" * 10_000},
        {"TRACEPARENT": b"00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-01"},
    ],
)
def test_hostile_kafka_headers_give_no_trace_context_and_no_error(
    headers: dict[str, bytes | None],
) -> None:
    context_from_headers(headers)  # Kafka allows a header without a value
