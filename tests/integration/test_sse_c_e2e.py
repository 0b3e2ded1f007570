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

from harness import EnforcerRun
from support import StackEnv, TlsMinio, read_notifications


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
                {"QueueArn": stack.notify_arn, "Events": ["s3:ObjectCreated:*"]}
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
