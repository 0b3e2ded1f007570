import json
from pathlib import Path

import pytest

from enforcer.core.events import IgnoredRecord, ObjectEvent, is_object_created, parse_message
from enforcer.errors import BadEvent

SAMPLE = Path(__file__).parents[1] / "data" / "minio-put-event.json"


def minio_message(
    key: str = "a%2Fb+c.txt", name: str = "s3:ObjectCreated:Put", **obj: object
) -> bytes:
    record = {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "eventName": name,
        "eventTime": "2026-11-26T21:14:03.512Z",
        "responseElements": {"x-amz-request-id": "187B3C1F2A6D4E10"},
        "s3": {"bucket": {"name": "bkt"}, "object": {"key": key, "size": 3, "eTag": "e", **obj}},
    }
    return json.dumps({"EventName": name, "Key": "bkt/whatever", "Records": [record]}).encode()


def test_sample_minio_message_decodes_key_and_metadata() -> None:
    [event] = parse_message(SAMPLE.read_bytes())
    assert isinstance(event, ObjectEvent)
    assert event.bucket == "invoices"
    assert event.key == "2026/11/report q4+final.pdf"
    assert event.size == 182044
    assert event.version_id is None  # MinIO sends "" on unversioned buckets
    assert event.source_format == "minio"


@pytest.mark.parametrize(
    ("escaped", "decoded"),
    [
        ("plain.txt", "plain.txt"),
        ("a+b", "a b"),
        ("a%2Bb", "a+b"),
        ("100%25", "100%"),
        ("deep%2Fer%2Fpath%2Fx", "deep/er/path/x"),
        ("%C3%BCnic%C3%B8de+%E2%9C%93", "ünicøde ✓"),
        ("a%20b", "a b"),
    ],
)
def test_object_keys_are_query_unescaped(escaped: str, decoded: str) -> None:
    [event] = parse_message(minio_message(key=escaped))
    assert isinstance(event, ObjectEvent)
    assert event.key == decoded


@pytest.mark.parametrize(
    "name",
    [
        "s3:ObjectCreated:Put",
        "s3:ObjectCreated:Post",
        "s3:ObjectCreated:Copy",
        "s3:ObjectCreated:CompleteMultipartUpload",
        "s3:ObjectCreated:PutRetention",
        "s3:ObjectCreated:PutLegalHold",
        "s3:ObjectCreated:PutTagging",
        "s3:ObjectCreated:DeleteTagging",
        "ObjectCreated:Put",
    ],
)
def test_every_object_created_subtype_is_accepted(name: str) -> None:
    assert is_object_created(name)
    [event] = parse_message(minio_message(name=name))
    assert isinstance(event, ObjectEvent)


@pytest.mark.parametrize(
    "name", ["s3:ObjectRemoved:Delete", "s3:ObjectAccessed:Get", "ObjectRemoved:Delete"]
)
def test_other_event_names_are_ignored_with_a_reason(name: str) -> None:
    [record] = parse_message(minio_message(name=name))
    assert isinstance(record, IgnoredRecord)
    assert name in record.reason


def test_aws_notification_without_minio_envelope() -> None:
    body = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": "b"},
                    "object": {"key": "k+1", "versionId": "v9", "sequencer": "0A"},
                },
                "unknownField": {"x": 1},
            }
        ]
    }
    [event] = parse_message(json.dumps(body).encode())
    assert isinstance(event, ObjectEvent)
    assert (event.key, event.version_id, event.source_format) == ("k 1", "v9", "s3")


def test_eventbridge_object_created() -> None:
    body = {
        "version": "0",
        "id": "eb-1",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": "2026-11-26T10:00:00Z",
        "detail": {
            "bucket": {"name": "b"},
            "object": {"key": "x/y.txt", "size": 5, "version-id": "v1"},
        },
    }
    [event] = parse_message(json.dumps(body).encode())
    assert isinstance(event, ObjectEvent)
    assert (event.event_id, event.bucket, event.key, event.version_id) == (
        "eb-1",
        "b",
        "x/y.txt",
        "v1",
    )


def test_eventbridge_other_detail_type_is_ignored() -> None:
    body = {
        "detail-type": "Object Deleted",
        "detail": {"bucket": {"name": "b"}, "object": {"key": "k"}},
    }
    [record] = parse_message(json.dumps(body).encode())
    assert isinstance(record, IgnoredRecord)


def test_s3_test_event_yields_nothing() -> None:
    assert parse_message(b'{"Service":"Amazon S3","Event":"s3:TestEvent"}') == []


def test_event_id_is_stable_across_redeliveries() -> None:
    [a] = parse_message(minio_message(sequencer="S1"))
    [b] = parse_message(minio_message(sequencer="S1"))
    [c] = parse_message(minio_message(sequencer="S2"))
    assert a.event_id == b.event_id != c.event_id


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b"\xff\xfe", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1,2]", "JSON list"),
        (b'{"hello":"world"}', "not an S3 notification"),
        (b'{"Records":"nope"}', "Records"),
        (b'{"Records":[{"eventName":"s3:ObjectCreated:Put"}]}', "Records.0.s3"),
        (
            b'{"Records":[{"eventName":"x","s3":{"bucket":{"name":"b"},"object":{"key":""}}}]}',
            "key",
        ),
        (b'{"detail-type":"Object Created","detail":{}}', "detail.bucket"),
    ],
)
def test_unreadable_messages_raise_bad_event_with_a_precise_reason(
    payload: bytes | None, reason: str
) -> None:
    with pytest.raises(BadEvent, match=reason):
        parse_message(payload)
