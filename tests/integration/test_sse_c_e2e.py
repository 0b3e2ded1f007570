"""SSE-C objects are reported, never touched.

MinIO refuses SSE-C over plain HTTP, so this runs against the session's TLS MinIO, which
publishes its notifications to the stack's Kafka like the stack's own MinIO does.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from pathlib import Path

import pytest
from harness import EnforcerRun
from pydantic import SecretStr
from support import StackEnv, TlsMinio, read_notifications

from enforcer.config import S3Settings
from enforcer.core.verdict import Encryption
from enforcer.errors import BadEvent
from enforcer.storage.s3 import open_s3_storage


async def test_sse_c_object_is_reported_and_left_alone(
    stack: StackEnv, tls_minio: TlsMinio, tmp_path: Path
) -> None:
    s3 = tls_minio.client()
    bucket = f"t-ssec-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": tls_minio.notify_arn, "Events": ["s3:ObjectCreated:*"]}
            ]
        },
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"rules:\n  - {{bucket: {bucket}, key: some-ek}}\n")
    run = EnforcerRun(
        stack,
        policy_file=policy,
        extra_env={
            "ENFORCER_S3__ENDPOINT_URL": tls_minio.endpoint,
            "ENFORCER_S3__CA_BUNDLE": tls_minio.ca_file,
            "ENFORCER_S3__ACCESS_KEY_ID": tls_minio.access_key,
            "ENFORCER_S3__SECRET_ACCESS_KEY": tls_minio.secret_key,
            "ENFORCER_KMS__KIND": "none",
        },
    )
    await run.start_at_end()
    customer_key = os.urandom(32)
    sse_c = {
        "SSECustomerAlgorithm": "AES256",
        "SSECustomerKey": base64.b64encode(customer_key).decode(),
        "SSECustomerKeyMD5": base64.b64encode(
            hashlib.md5(customer_key, usedforsecurity=False).digest()
        ).decode(),
    }
    s3.put_object(Bucket=bucket, Key="customer.bin", Body=b"only the customer can read", **sse_c)
    before = s3.head_object(Bucket=bucket, Key="customer.bin", **sse_c)
    await read_notifications(stack, bucket, 1)

    await run.drain()

    [record] = await run.audit(bucket)
    assert (record["verdict"], record["action"]) == ("sse_c", "skipped")
    after = s3.head_object(Bucket=bucket, Key="customer.bin", **sse_c)
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])
    assert await run.dead_letters() == []


async def test_only_the_stores_sse_c_refusal_is_verdict_sse_c(
    stack: StackEnv, tls_minio: TlsMinio
) -> None:
    """A HEAD answered 400 is SSE-C only when the store says so; a 400 for a name the store
    refuses is a bad event (these were once audited as ``sse_c``)."""
    s3 = tls_minio.client()
    bucket = f"t-ssec400-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    customer_key = os.urandom(32)
    s3.put_object(
        Bucket=bucket, Key="customer.bin", Body=b"x", SSECustomerAlgorithm="AES256",
        SSECustomerKey=base64.b64encode(customer_key).decode(),
        SSECustomerKeyMD5=base64.b64encode(
            hashlib.md5(customer_key, usedforsecurity=False).digest()
        ).decode(),
    )  # fmt: skip
    settings = S3Settings(
        endpoint_url=tls_minio.endpoint,
        ca_bundle=Path(tls_minio.ca_file),
        access_key_id=SecretStr(tls_minio.access_key),
        secret_access_key=SecretStr(tls_minio.secret_key),
    )
    async with open_s3_storage(settings.options()) as storage:
        snapshot = await storage.head(bucket, "customer.bin")
        assert snapshot is not None and snapshot.encryption is Encryption.SSE_C
        for hostile in ("../etc/passwd", "a//b", "a/./b", "k\x00k", "k" * 1025):
            with pytest.raises(BadEvent, match="refuses the object name"):
                await storage.head(bucket, hostile)
        with pytest.raises(BadEvent, match="refuses"):
            await storage.head("../etc", "k")
