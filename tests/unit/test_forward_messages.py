"""enforcer.forward.messages: SQS message bodies → the Kafka records the enforcer reads.

The samples under tests/data pin the shapes AWS delivers to a queue: the S3 event notification
(S3 → SQS), S3's test event, an EventBridge "Object Created" event (rule → SQS target) and the
S3 notification wrapped by SNS (S3 → SNS → SQS without raw message delivery).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from enforcer.core.events import ObjectEvent, parse_message
from enforcer.forward.messages import Forwarding, KafkaRecord, translate

DATA = Path(__file__).parents[1] / "data"


def sample(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8").strip()


def only(forwarding: Forwarding) -> KafkaRecord:
    [record] = forwarding.records
    return record


def test_an_s3_notification_goes_unchanged_keyed_by_the_decoded_object() -> None:
    body = sample("sqs-s3-event.json")
    record = only(forwarded := translate(body))
    assert forwarded.result == "forwarded"
    assert record.value == body.encode()
    assert record.key == b"finance-archive/reports/Q4 2026/ledger + notes.csv"
    [event] = parse_message(record.value)  # what the enforcer will read
    assert isinstance(event, ObjectEvent)
    assert f"{event.bucket}/{event.key}".encode() == record.key
    assert event.version_id == "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"


def test_the_test_event_is_skipped() -> None:
    forwarding = translate(sample("sqs-s3-test-event.json"))
    assert (forwarding.records, forwarding.result) == ((), "skipped")
    assert forwarding.note == "S3 test event"


def test_an_eventbridge_event_goes_unchanged() -> None:
    body = sample("sqs-eventbridge-object-created.json")
    record = only(translate(body))
    assert (record.key, record.value) == (b"finance-archive/reports/ledger.csv", body.encode())
    [event] = parse_message(record.value)
    assert isinstance(event, ObjectEvent) and event.source_format == "eventbridge"


def test_sns_is_unwrapped_and_the_inner_notification_produced() -> None:
    record = only(translate(sample("sqs-sns-s3-event.json")))
    assert record.value == sample("sqs-s3-event.json").encode()
    assert record.key == b"finance-archive/reports/Q4 2026/ledger + notes.csv"


def test_an_sns_wrapped_test_event_is_skipped_too() -> None:
    wrapped = {"Type": "Notification", "TopicArn": "arn:aws:sns:eu-west-1:1:t",
               "Message": sample("sqs-s3-test-event.json")}  # fmt: skip
    assert translate(json.dumps(wrapped)).result == "skipped"


def test_several_records_become_one_kafka_record_each() -> None:
    records = [
        {"eventName": "ObjectCreated:Put",
         "s3": {"bucket": {"name": "b"}, "object": {"key": name, "eTag": "e"}}}
        for name in ("a+b", "c%2Fd")
    ]  # fmt: skip
    forwarding = translate(json.dumps({"Records": records}))
    assert [r.key for r in forwarding.records] == [b"b/a b", b"b/c/d"]
    for record, original in zip(forwarding.records, records, strict=True):
        assert json.loads(record.value) == {"Records": [original]}


def test_a_notification_without_records_produces_nothing() -> None:
    assert translate('{"Records": []}').result == "skipped"


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        "[1, 2, 3]",
        '{"hello": "world"}',
        '{"Records": "not a list"}',
        '{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "no spaces '
        'allowed"}, "object": {"key": "k"}}}]}',
        '{"detail-type": "Object Created", "detail": {}}',
        '{"Type": "Notification", "TopicArn": "t", "Message": "still not json"}',
        "",
    ],
)
def test_anything_else_is_produced_as_is_without_a_key(body: str) -> None:
    forwarding = translate(body)
    assert forwarding.result == "unreadable"
    assert all(record.key is None for record in forwarding.records)
    assert forwarding.note
    if not body.startswith('{"Type"'):  # an unwrapped SNS message: its inner body goes
        assert [r.value for r in forwarding.records] == [body.encode()]


def test_a_bad_record_among_good_ones_alone_goes_without_a_key() -> None:
    good = {
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}},
    }
    bad = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}}}
    forwarding = translate(json.dumps({"Records": [good, bad]}))
    assert [r.key for r in forwarding.records] == [b"b/k", None]
    assert forwarding.result == "unreadable"


def test_non_created_events_are_forwarded_for_the_enforcer_to_audit_as_skipped() -> None:
    removed = {"eventName": "ObjectRemoved:Delete",
               "s3": {"bucket": {"name": "b"}, "object": {"key": "gone"}}}  # fmt: skip
    assert only(translate(json.dumps({"Records": [removed]}))).key == b"b/gone"


def test_sns_nesting_is_unwrapped_at_most_twice() -> None:
    body = sample("sqs-s3-event.json")
    for _ in range(3):
        body = json.dumps({"Type": "Notification", "TopicArn": "t", "Message": body})
    assert translate(body).result == "unreadable"
