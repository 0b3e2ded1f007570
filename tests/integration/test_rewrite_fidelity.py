"""The rewrite changes the encryption and nothing else; a user's concurrent write always wins."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest
from harness import EnforcerRun, set_default_key
from replicas import audit_tail, with_action
from support import MakeBucket, MakeKey, Notifications, StackEnv

PRESERVED_HEAD_FIELDS = (
    "ContentLength",
    "ContentType",
    "ContentEncoding",
    "ContentDisposition",
    "ContentLanguage",
    "CacheControl",
    "ExpiresString",
    "Metadata",
    "StorageClass",
    "ObjectLockMode",
    "ObjectLockRetainUntilDate",
    "ObjectLockLegalHoldStatus",
    "WebsiteRedirectLocation",  # MinIO stores none (absent on both sides); AWS: unit-tested
)


def md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()


async def test_every_preserved_attribute_survives_field_by_field(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
) -> None:
    ek = make_key()
    bucket = make_bucket(object_lock=True)
    run = EnforcerRun(stack)
    await run.start_at_end()
    body = b"attribute fidelity " * 1000
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).replace(microsecond=0)
    s3_admin.put_object(
        Bucket=bucket,
        Key="doc.json",
        Body=body,
        ContentMD5=md5_b64(body),
        Metadata={"department": "finance", "x-unicode": "caf%C3%A9"},
        ContentType="application/json; charset=utf-8",
        ContentEncoding="identity",
        ContentDisposition='attachment; filename="doc.json"',
        ContentLanguage="de-CH",
        CacheControl="max-age=3600, private",
        Expires=dt.datetime(2031, 5, 17, 8, 30, tzinfo=dt.UTC),
        StorageClass="REDUCED_REDUNDANCY",
        WebsiteRedirectLocation="/elsewhere.html",
        Tagging="team=fin&pii=yes&empty=",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
        ObjectLockLegalHoldStatus="ON",
    )
    before = s3_admin.head_object(Bucket=bucket, Key="doc.json")
    tags_before = s3_admin.get_object_tagging(Bucket=bucket, Key="doc.json")["TagSet"]
    set_default_key(s3_admin, bucket, ek)
    await notifications(bucket, 1)

    await run.drain()

    after = s3_admin.head_object(Bucket=bucket, Key="doc.json")
    assert after["VersionId"] != before["VersionId"]  # the rewrite is a new version
    assert (after["ServerSideEncryption"], after["SSEKMSKeyId"]) == ("aws:kms", f"arn:aws:kms:{ek}")
    for field in PRESERVED_HEAD_FIELDS:
        assert after.get(field) == before.get(field), field
    tags_after = s3_admin.get_object_tagging(Bucket=bucket, Key="doc.json")["TagSet"]
    assert sorted(map(str, tags_after)) == sorted(map(str, tags_before))
    got = s3_admin.get_object(Bucket=bucket, Key="doc.json")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
    # The inspected version is still there (versions: keep), still locked.
    old = s3_admin.head_object(Bucket=bucket, Key="doc.json", VersionId=before["VersionId"])
    assert old["ObjectLockLegalHoldStatus"] == "ON"


async def test_concurrent_writer_always_wins(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
) -> None:
    ek = make_key()
    bucket = make_bucket()
    keys = [f"hot/{i}" for i in range(8)]
    for key in keys:
        s3_admin.put_object(Bucket=bucket, Key=key, Body=b"initial " + key.encode())
    set_default_key(s3_admin, bucket, ek)
    run = EnforcerRun(stack, extra_env={"ENFORCER_CONCURRENCY": "8"})
    await run.start_at_end()
    # Re-announce the objects (plaintext) so the enforcer starts rewriting, while a writer keeps
    # overwriting the same keys with plaintext (no SSE headers is impossible now: the bucket
    # default applies), so it writes SSE-S3, which is non-compliant too.
    last_write: dict[str, bytes] = {}
    stop = threading.Event()

    def writer() -> None:
        round_ = 0
        while not stop.is_set():
            round_ += 1
            for key in keys:
                body = f"user write {round_} of {key}".encode()
                s3_admin.put_object(
                    Bucket=bucket, Key=key, Body=body, ServerSideEncryption="AES256"
                )
                last_write[key] = body

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        async with audit_tail(run) as tail:
            enforcer = asyncio.create_task(run.drain(idle=3.0))
            # The rewrites race the writer.
            await tail.until(with_action(bucket, "reencrypted"), 60, "a rewrite")
    finally:
        stop.set()
        await asyncio.to_thread(thread.join)
    await enforcer
    # Every write after the writer stopped is announced; let the enforcer catch up on them.
    await run.drain(idle=2.0)

    for key in keys:
        got = s3_admin.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == last_write[key], key  # the user's last write won
        assert got["SSEKMSKeyId"] == f"arn:aws:kms:{ek}", key  # and ended up compliant
    audit = await run.audit(bucket)
    assert any(r["action"] == "reencrypted" for r in audit)
    assert not [r for r in audit if r["action"] == "failed"]


async def test_versioned_bucket_keeps_or_purges_only_the_inspected_version(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
    tmp_path: Path,
) -> None:
    ek = make_key()
    bucket = make_bucket(versioned=True)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n"
        f"  - {{bucket: {bucket}, prefix: keep/, key: {ek}}}\n"
        f"  - {{bucket: {bucket}, prefix: purge/, key: {ek}, versions: purge-noncompliant}}\n"
    )
    run = EnforcerRun(stack, policy_file=policy)
    await run.start_at_end()
    first = {}
    inspected = {}
    for key in ("keep/a", "purge/a"):
        first[key] = s3_admin.put_object(Bucket=bucket, Key=key, Body=b"v1")["VersionId"]
        inspected[key] = s3_admin.put_object(Bucket=bucket, Key=key, Body=b"v2")["VersionId"]
    await notifications(bucket, 4)

    await run.drain()

    def versions(key: str) -> list[str]:
        listing = s3_admin.list_object_versions(Bucket=bucket, Prefix=key)
        return [v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == key]

    kept = versions("keep/a")
    assert first["keep/a"] in kept and inspected["keep/a"] in kept and len(kept) == 3
    purged = versions("purge/a")
    assert inspected["purge/a"] not in purged  # exactly the inspected version went
    assert first["purge/a"] in purged  # an older version is not the enforcer's business
    assert len(purged) == 2
    audit = [r for r in await run.audit(bucket) if r["action"] == "reencrypted"]
    assert {r["key"]: r.get("purged_version_id") for r in audit} == {
        "keep/a": None,
        "purge/a": inspected["purge/a"],
    }
    for key in ("keep/a", "purge/a"):
        head = s3_admin.head_object(Bucket=bucket, Key=key)
        assert head["SSEKMSKeyId"] == f"arn:aws:kms:{ek}"
        assert s3_admin.get_object(Bucket=bucket, Key=key)["Body"].read() == b"v2"


@pytest.mark.parametrize("size", [0, 1, 128 * 1024 + 1])
async def test_sizes_round_trip(
    size: int,
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
) -> None:
    ek = make_key()
    bucket = make_bucket()
    body = bytes(i % 251 for i in range(size))
    s3_admin.put_object(Bucket=bucket, Key="obj", Body=body)
    set_default_key(s3_admin, bucket, ek)
    run = EnforcerRun(stack)
    await run.start_at_end()
    s3_admin.put_object_tagging(  # announce it again (PutTagging is an ObjectCreated event)
        Bucket=bucket, Key="obj", Tagging={"TagSet": [{"Key": "t", "Value": "1"}]}
    )
    await notifications(bucket, 2)
    await run.drain()
    got = s3_admin.get_object(Bucket=bucket, Key="obj")
    assert got["Body"].read() == body
    assert got["SSEKMSKeyId"] == f"arn:aws:kms:{ek}"
