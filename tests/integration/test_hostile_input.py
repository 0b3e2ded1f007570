"""No input can stop the service: thousands of hostile messages while real objects are written.

``enforcer run`` (the real service, as a subprocess) consumes the notification topic, where
MinIO publishes the real writes, and a second input topic that a hostile producer fills with
every kind of junk (kept off the shared notification topic so other tests need not scan it).
Afterwards: the service never stopped, every real object is compliant, every hostile message
is accounted for (one dead-letter record each; the 3,000-record message one audit record per
record), and the group's lag is back to 0.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from cli_runner import Cli
from harness import read_raw, write_policy
from replicas import Replica, group_lag
from support import MakeBucket, MakeKey, StackEnv
from waiting import eventually

REAL_OBJECTS = 150
BIG_MESSAGE_RECORDS = 3000


def notification(bucket: str, key: str) -> dict[str, Any]:
    return {
        "eventName": "s3:ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
    }


def message(*records: dict[str, Any]) -> bytes:
    return json.dumps({"EventName": "s3:ObjectCreated:Put", "Records": list(records)}).encode()


def hostile_messages(
    bucket: str, rng: random.Random
) -> dict[str, list[tuple[bytes | None, bytes]]]:
    """(Kafka key, value) per kind; each one must end as exactly one dead-letter record."""
    n = 400
    none: bytes | None = None  # no Kafka key
    path_tricks = ["../etc/passwd", "a//b", "a/./b", "%00x", "k" * 1025, "..", "a/../../b"]
    bad_buckets = ["../etc", "ab", "A" * 64, "bad_bucket_", "-x-", "a b", "", "x/y"]
    return {
        "nesting": [(none, b"[" * 100_000 + b"]" * 100_000)] * 50
        + [(none, b'{"Records": ' + b"[" * 50_000 + b"]" * 50_000 + b"}")] * 50,
        "huge": [(none, b"\x01" * 800_000)] * 4
        + [(None, rng.randbytes(800_000)) for _ in range(4)]
        + [(b"k" * 200_000, b"not json")] * 2,
        "binary": [(None, rng.randbytes(rng.randint(1, 2000))) for _ in range(n)],
        "invalid_utf8": [(None, b'{"Records": "' + b"\xff\xfe\xc3" * i + b'"}') for i in range(n)],
        "control_chars": [
            (None, b'{"Records": [{"eventName": "\x01\x02%s\x1f"}]}' % bytes([i % 32]))
            for i in range(n)
        ],
        "path_tricks": [
            (f"{bucket}/{i}".encode(), message(notification(bucket, path_tricks[i % 7])))
            for i in range(n)
        ],
        "bad_buckets": [(None, message(notification(bad_buckets[i % 8], "k"))) for i in range(n)],
    }


#: Headers a hostile producer might send along: no value, a trace context that is not one.
HOSTILE_HEADERS = [("traceparent", b"00-\xff\xfe-zz-01"), ("empty", None), ("tracestate", b"\x00")]


async def produce(
    bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]
) -> list[tuple[int, int]]:
    """Send in order (every tenth with hostile headers); return each (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2_000_000)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, value=v, key=k, headers=None if i % 10 else HOSTILE_HEADERS)
            for i, (k, v) in enumerate(messages)
        ]
        return [(m.partition, m.offset) for m in await asyncio.gather(*sent)]
    finally:
        await producer.stop()


def write_objects(s3: Any, bucket: str, count: int) -> list[str]:
    keys = [f"real/{i:04}.txt" for i in range(count)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=f"real object {key}".encode())
    return keys


def compliant(s3: Any, bucket: str, keys: list[str], ek: str) -> int:
    return sum(
        s3.head_object(Bucket=bucket, Key=k).get("SSEKMSKeyId") == f"arn:aws:kms:{ek}" for k in keys
    )


@pytest.mark.timeout(300)  # about a minute alone; more on a shared machine
async def test_hostile_messages_mixed_with_real_writes_stop_nothing(
    stack: StackEnv,
    s3_admin: Any,
    make_bucket: MakeBucket,
    make_key: MakeKey,
    tmp_path: Path,
) -> None:
    ek, bucket = make_key(), make_bucket()
    hostile_topic = f"t-hostile-{uuid.uuid4().hex[:8]}"
    # The first junk creates the topic (an input topic must exist when the service starts).
    warm_up = await produce(stack.kafka_bootstrap, hostile_topic, [(None, b"not json")])
    cli = Cli(
        stack, policy_file=write_policy(tmp_path / "policy.yaml", {"bucket": bucket, "key": ek})
    )
    topics = [stack.notify_topic, hostile_topic]
    await cli.start_at_end()
    env = cli.env(ENFORCER_KAFKA__TOPICS=json.dumps(topics))
    service = await Replica.start(env, tmp_path / "enforcer.log", log_level="WARNING")
    try:
        await service.wait_ready()
        kinds = hostile_messages(bucket, random.Random(7))
        big = message(
            *(notification(bucket, f"never-written/{i}") for i in range(BIG_MESSAGE_RECORDS))
        )
        bad = [m for batch in kinds.values() for m in batch]
        started = time.monotonic()
        writing = asyncio.create_task(
            asyncio.to_thread(write_objects, s3_admin, bucket, REAL_OBJECTS)
        )
        sent = await produce(stack.kafka_bootstrap, hostile_topic, [*bad, (b"big", big)])
        keys = await writing

        async def progress() -> tuple[int, int]:  # (lag, compliant objects)
            lag = await group_lag(stack.kafka_bootstrap, cli.group_id, topics)
            return lag, compliant(s3_admin, bucket, keys, ek)

        await eventually(
            progress, "lag 0 and every real object compliant", timeout=120, every=1,
            until=lambda got: got == (0, len(keys)), alive=service.alive,
            show=lambda got: f"lag {got[0]}, compliant {got[1]}/{len(keys)}",
            context=lambda: service.log_text()[-5000:],
        )  # fmt: skip
        elapsed = time.monotonic() - started
    finally:
        code = await service.stop()
    assert code == 0, service.log_text()[-5000:]
    log = service.log_text()
    assert "Traceback" not in log and "fatal" not in log, log[-5000:]

    dead = [
        json.loads(r.value or b"") for r in await read_raw(stack.kafka_bootstrap, cli.dlq_topic)
    ]
    hostile = [d for d in dead if d["topic"] == hostile_topic]
    kind_of = dict(zip(sent, [kind for kind, batch in kinds.items() for _ in batch], strict=False))
    expected = {*warm_up, *sent[: len(bad)]}
    got = [(d["partition"], d["offset"]) for d in hostile]
    missing = Counter(kind_of[m] for m in expected - set(got))
    assert not missing, f"hostile messages without a dead-letter record: {missing}"
    assert sorted(got) == sorted(expected)  # and exactly one each
    assert {d["error_class"] for d in hostile} == {"bad_event"}
    assert [d for d in dead if d["topic"] != hostile_topic] == []  # no real object failed
    cut = [d for d in hostile if d["truncated"]]
    assert len(cut) >= 6 and all(d["original_sha256"] and d["original_length"] for d in cut)

    replay = cli("dlq", "replay", "--dry-run").json()
    assert replay["skipped"] == len(cut)  # a cut payload cannot be replayed, and says why
    assert all("cannot be replayed" in r["reason"] for r in replay["skipped_records"])
    assert replay["would_replay"] == len(dead) - len(cut)

    audit = [
        json.loads(r.value or b"") for r in await read_raw(stack.kafka_bootstrap, cli.audit_topic)
    ]
    gone = [a for a in audit if a["key"].startswith("never-written/")]
    assert len({a["key"] for a in gone}) == BIG_MESSAGE_RECORDS
    assert {a["verdict"] for a in gone} == {"gone"}
    assert not [a for a in audit if a.get("verdict") == "sse_c"]  # no 400 passes for SSE-C
    stamps = sorted(datetime.fromisoformat(a["timestamp"]) for a in gone)
    big_seconds = (stamps[-1] - stamps[0]).total_seconds()
    counts = ", ".join(f"{kind} {len(batch)}" for kind, batch in kinds.items())
    print(  # the figures, for the closing note (pytest -s)
        f"\nhostile messages {len(bad) + 2} (1 first, {counts},"
        f" 1 with {BIG_MESSAGE_RECORDS} records); DLQ records {len(hostile)} ({len(cut)} cut);"
        f" real objects compliant {len(keys)}/{len(keys)}; all handled in {elapsed:.1f} s,"
        f" the {BIG_MESSAGE_RECORDS}-record message in {big_seconds:.1f} s"
    )
