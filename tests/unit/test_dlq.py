"""Decoding dead-letter records for replay (enforcer.cli.dlq, pure parts)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest
from aiokafka import TopicPartition

from enforcer.cli.dlq import ReplaySummary, decode_dead_letter
from enforcer.engine.records import DeadLetterRecord, dead_letter, without_payload
from enforcer.errors import BadEvent

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def dlq_value(value: bytes | None, key: bytes | None = b"b/k") -> bytes:
    record = dead_letter(
        value, key, topic="events", partition=2, offset=41, error_class="bad_event",
        reason="not JSON", attempts=1, first_seen=NOW, last_seen=NOW,
    )  # fmt: skip
    return record.model_dump_json().encode()


@pytest.mark.parametrize("original", [b'{"Records": []}', b"not json", b"\xff\xfe\x00", None])
def test_the_original_payload_comes_back_byte_for_byte(original: bytes | None) -> None:
    replay = decode_dead_letter(dlq_value(original), b"b/k")
    assert (replay.topic, replay.value, replay.key) == ("events", original, b"b/k")
    assert replay.record.offset == 41


def test_the_dlq_records_kafka_key_wins_over_original_key() -> None:
    binary_key = b"\xff\x00key"
    replay = decode_dead_letter(dlq_value(b"x", key=binary_key), binary_key)
    assert replay.key == binary_key  # original_key holds base64 text; the Kafka key is exact
    assert decode_dead_letter(dlq_value(b"x"), None).key == b"b/k"


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b"",
        None,
        b'{"topic": "events"}',
        dlq_value(b"x").replace(b'"utf-8"', b'"rot13"'),
        dlq_value(b"\xff").replace(base64.b64encode(b"\xff"), b"!!not base64!!"),
    ],
)
def test_anything_else_is_a_bad_record(value: bytes | None) -> None:
    with pytest.raises(BadEvent):
        decode_dead_letter(value, None)


def test_summary_names_what_a_dry_run_would_do() -> None:
    summary = ReplaySummary("dlq", "g.dlq-replay", dry_run=True)
    tp = TopicPartition("dlq", 0)
    summary.add_replay(tp, 7, decode_dead_letter(dlq_value(b"x"), None))
    summary.add_skip(tp, 8, BadEvent("not a dead-letter record"))
    report = summary.as_dict()
    assert (report["would_replay"], report["skipped"]) == (1, 1)
    assert "replayed" not in report
    assert report["records"][0] | {"last_seen": None} == {
        "dlq_partition": 0, "dlq_offset": 7, "topic": "events", "key": "b/k",
        "original_partition": 2, "original_offset": 41, "error_class": "bad_event",
        "reason": "not JSON", "last_seen": None,
    }  # fmt: skip
    assert report["skipped_records"] == [
        {"partition": 0, "offset": 8, "reason": "not a dead-letter record"}
    ]


@pytest.mark.parametrize(
    "original",
    [
        b"\x01" * 800_000,  # valid UTF-8 that escapes six-fold in JSON
        b'"\\' * 400_000,
        bytes(range(256)) * 4000,  # binary: base64
        "é✓".encode() * 200_000,
    ],
)
def test_a_large_payload_is_cut_to_fit_and_can_still_be_found(original: bytes) -> None:
    value = dlq_value(original, key=b"k" * 100_000)
    assert len(value) < 400_000  # far below the broker's 1 MiB default
    record = DeadLetterRecord.model_validate_json(value)
    assert record.truncated
    assert record.original_length == len(original)
    assert record.original_sha256 == hashlib.sha256(original).hexdigest()
    assert record.original_payload is not None
    assert original.startswith(base64.b64decode(record.original_payload))
    with pytest.raises(BadEvent, match=r"cut to fit .* cannot be replayed"):
        decode_dead_letter(value, b"b/k")


def test_a_payload_that_fits_is_kept_whole_with_its_digest() -> None:
    original = b'{"Records": []}' * 1000
    record = DeadLetterRecord.model_validate_json(dlq_value(original))
    assert (record.truncated, record.original_length) == (False, len(original))
    assert decode_dead_letter(dlq_value(original), b"b/k").value == original


def test_a_record_sent_without_payload_says_so() -> None:
    record = without_payload(DeadLetterRecord.model_validate_json(dlq_value(b"x" * 10)))
    assert (record.original_payload, record.truncated, record.original_length) == (None, True, 10)
    with pytest.raises(BadEvent, match="cannot be replayed"):
        decode_dead_letter(record.model_dump_json().encode(), b"b/k")
