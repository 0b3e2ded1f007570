"""End to end on the real stack: MinIO notification → Kafka → enforcer → MinIO + audit topic."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from harness import EnforcerRun, set_default_key
from support import MakeBucket, MakeKey, Notifications, StackEnv

from enforcer.core.policy import Mode


@pytest.fixture
async def run(stack: StackEnv) -> EnforcerRun:
    enforcer = EnforcerRun(stack)
    await enforcer.start_at_end()
    return enforcer


def by_key(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The first audit record per object (later ones are for the enforcer's own rewrite)."""
    first: dict[str, dict[str, Any]] = {}
    for record in records:
        first.setdefault(record["key"], record)
    return first


def sha256(s3: Any, bucket: str, key: str, **extra: Any) -> str:
    return hashlib.sha256(s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()).hexdigest()


async def test_every_verdict_end_to_end(
    run: EnforcerRun,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
    stack: StackEnv,
) -> None:
    ek, other = make_key("req"), make_key("other")
    bucket = make_bucket()
    body = b"x" * 5000
    s3_admin.put_object(Bucket=bucket, Key="plain", Body=body)
    s3_admin.put_object(Bucket=bucket, Key="sse-s3", Body=body, ServerSideEncryption="AES256")
    s3_admin.put_object(
        Bucket=bucket, Key="wrong", Body=body, ServerSideEncryption="aws:kms", SSEKMSKeyId=other
    )
    # A key whose name *contains* the required one is still the wrong key (no substring match).
    s3_admin.put_object(
        Bucket=bucket,
        Key="lookalike",
        Body=body,
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=stack.default_key,
    )
    s3_admin.put_object(
        Bucket=bucket, Key="good", Body=body, ServerSideEncryption="aws:kms", SSEKMSKeyId=ek
    )
    s3_admin.put_object(Bucket=bucket, Key="gone", Body=body)
    s3_admin.delete_object(Bucket=bucket, Key="gone")
    set_default_key(s3_admin, bucket, ek)
    unscoped = make_bucket()
    s3_admin.put_object(Bucket=unscoped, Key="free", Body=body)
    await notifications(bucket, 6)
    await notifications(unscoped, 1)

    await run.drain()

    audit = by_key(await run.audit(bucket))
    expected = {
        "plain": ("plaintext", "reencrypted"),
        "sse-s3": ("sse_s3", "reencrypted"),
        "wrong": ("wrong_key", "reencrypted"),
        "lookalike": ("wrong_key", "reencrypted"),
        "good": ("compliant", "none"),
        "gone": ("gone", "skipped"),
    }
    assert {k: (r["verdict"], r["action"]) for k, r in audit.items()} == expected
    [free] = await run.audit(unscoped)
    assert (free["verdict"], free["action"]) == ("out_of_scope", "none")
    for key in ("plain", "sse-s3", "wrong", "lookalike", "good"):
        head = s3_admin.head_object(Bucket=bucket, Key=key)
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == (
            "aws:kms",
            f"arn:aws:kms:{ek}",
        )
        assert sha256(s3_admin, bucket, key) == hashlib.sha256(body).hexdigest()
    record = audit["plain"]
    assert record["required_key"] == ek and record["key_used"] == ek
    assert record["new_etag"] == s3_admin.head_object(Bucket=bucket, Key="plain")["ETag"]
    assert record["mode"] == "enforce" and record["trace_id"] and record["schema_version"] == 2
    assert await run.dead_letters() == []


async def test_own_rewrite_event_resolves_compliant_no_loop(
    run: EnforcerRun,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
) -> None:
    ek = make_key()
    bucket = make_bucket()
    s3_admin.put_object(Bucket=bucket, Key="obj", Body=b"data")
    set_default_key(s3_admin, bucket, ek)
    await notifications(bucket, 1)
    await run.drain()
    await notifications(bucket, 2)  # MinIO announced our own rewrite too
    await run.drain()  # (may have been handled by the first drain already)
    records = await run.audit(bucket)
    assert [(r["verdict"], r["action"]) for r in records] == [
        ("plaintext", "reencrypted"),
        ("compliant", "none"),
    ]


async def test_dry_run_writes_nothing_and_audits_everything(
    run: EnforcerRun,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
) -> None:
    ek = make_key()
    bucket = make_bucket()
    for key in ("a", "b"):
        s3_admin.put_object(Bucket=bucket, Key=key, Body=key.encode() * 100)
    s3_admin.put_object(Bucket=bucket, Key="c", Body=b"c", ServerSideEncryption="AES256")
    set_default_key(s3_admin, bucket, ek)
    before = {k: s3_admin.head_object(Bucket=bucket, Key=k) for k in ("a", "b", "c")}
    await notifications(bucket, 3)

    await run.drain(mode=Mode.AUDIT)

    for key, head in before.items():
        after = s3_admin.head_object(Bucket=bucket, Key=key)
        for field in ("ETag", "LastModified", "ContentLength"):
            assert after[field] == head[field], (key, field)
        assert after.get("ServerSideEncryption") == head.get("ServerSideEncryption")
    audit = by_key(await run.audit(bucket))
    assert {k: (r["verdict"], r["action"], r["mode"]) for k, r in audit.items()} == {
        "a": ("plaintext", "would_reencrypt", "audit"),
        "b": ("plaintext", "would_reencrypt", "audit"),
        "c": ("sse_s3", "would_reencrypt", "audit"),
    }


@pytest.mark.parametrize(
    "key",
    [
        "with space.txt",
        "plus+sign",
        "100% done",
        "ünïcødé/文件 ✓.bin",
        "a/b/c/d/e/f/g/deep.txt",
        "mixed %2B+ %20.txt",
    ],
)
async def test_awkward_keys(
    key: str,
    run: EnforcerRun,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
) -> None:
    ek = make_key()
    bucket = make_bucket(default_key=None)
    s3_admin.put_object(Bucket=bucket, Key=key, Body=b"payload")
    set_default_key(s3_admin, bucket, ek)
    await notifications(bucket, 1)
    await run.drain()
    record = (await run.audit(bucket))[0]
    assert record["key"] == key
    assert record["action"] == "reencrypted"
    assert s3_admin.head_object(Bucket=bucket, Key=key)["SSEKMSKeyId"] == f"arn:aws:kms:{ek}"


async def test_policy_file_rule_and_multipart_path(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
    tmp_path: Path,
) -> None:
    ek_default, ek_rule = make_key("default"), make_key("rule")
    bucket = make_bucket(default_key=ek_default)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"rules:\n  - {{bucket: {bucket}, prefix: big/, key: {ek_rule}}}\n")
    run = EnforcerRun(
        stack,
        policy_file=policy,
        extra_env={
            "ENFORCER_S3__MULTIPART_THRESHOLD": str(5 * 1024 * 1024),
            "ENFORCER_S3__PART_SIZE": str(5 * 1024 * 1024),
        },
    )
    await run.start_at_end()
    big = bytes(range(256)) * (12 * 1024 * 1024 // 256 + 3)  # ~12 MiB: three copied parts
    s3_admin.put_object(Bucket=bucket, Key="big/blob", Body=big, Metadata={"origin": "test"})
    s3_admin.put_object(Bucket=bucket, Key="small", Body=b"s")  # default EK applies: compliant
    await notifications(bucket, 2)

    await run.drain()

    audit = by_key(await run.audit(bucket))
    assert (audit["big/blob"]["verdict"], audit["big/blob"]["action"]) == (
        "wrong_key",
        "reencrypted",
    )
    assert audit["big/blob"]["rule_source"] == f"policy:{bucket}/big/"
    assert (audit["small"]["verdict"], audit["small"]["rule_source"]) == (
        "compliant",
        "bucket-default",
    )
    head = s3_admin.head_object(Bucket=bucket, Key="big/blob")
    assert head["SSEKMSKeyId"] == f"arn:aws:kms:{ek_rule}"
    assert head["ContentLength"] == len(big) and head["Metadata"] == {"origin": "test"}
    assert head["ETag"].endswith('-3"')  # it went through the multipart copy
    assert sha256(s3_admin, bucket, "big/blob") == hashlib.sha256(big).hexdigest()


async def test_malformed_messages_go_to_the_dlq_and_the_consumer_keeps_going(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
) -> None:
    ek = make_key()
    bucket = make_bucket(default_key=ek, notify=False)
    s3_admin.put_object(Bucket=bucket, Key="late", Body=b"x", ServerSideEncryption="AES256")
    topic = f"test-in-{uuid.uuid4().hex[:8]}"
    run = EnforcerRun(stack, extra_env={"ENFORCER_KAFKA__TOPICS": json.dumps([topic])})
    valid = json.dumps(
        {
            "EventName": "s3:ObjectCreated:Put",
            "Key": f"{bucket}/late",
            "Records": [
                {
                    "eventName": "s3:ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": {"key": "late"}},
                }
            ],
        }
    ).encode()
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        for value in (b"not json at all", b'{"Records": [{"eventName": 3}]}', b"\xff\xfe", valid):
            await producer.send_and_wait(topic, value=value, key=f"{bucket}/late".encode())
    finally:
        await producer.stop()

    await run.drain()

    dlq = await run.dead_letters()
    assert [d["offset"] for d in dlq] == [0, 1, 2]
    assert all(d["error_class"] == "bad_event" and d["reason"] and d["topic"] == topic for d in dlq)
    assert dlq[0]["original_payload"] == "not json at all"
    assert dlq[2]["payload_encoding"] == "base64"
    [record] = await run.audit(bucket)  # the good event after the bad ones was still handled
    assert (record["verdict"], record["action"]) == ("sse_s3", "reencrypted")


async def test_event_for_a_deleted_bucket_is_gone_not_dead_lettered(
    run: EnforcerRun,
    s3_admin: Any,
    make_bucket: MakeBucket,
    notifications: Notifications,
) -> None:
    bucket = make_bucket()
    s3_admin.put_object(Bucket=bucket, Key="short-lived", Body=b"x")
    await notifications(bucket, 1)
    s3_admin.delete_object(Bucket=bucket, Key="short-lived")
    s3_admin.delete_bucket(Bucket=bucket)

    await run.drain()

    [record] = await run.audit(bucket)
    assert (record["verdict"], record["action"]) == ("gone", "skipped")
    assert await run.dead_letters() == []
