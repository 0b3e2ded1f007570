"""The README demo: non-compliant objects on the local stack, found and fixed by the enforcer.

    make demo            (= stack up, then: .venv/bin/python examples/demo.py [--objects N])

It creates two External Keys in KES and two buckets, writes a mix of plaintext, SSE-S3,
wrong-key and compliant objects, sets each bucket's default EK with ``mc encrypt set sse-kms``
(exactly what an operator does), runs ``enforcer run --drain`` as the least-privilege enforcer
user until it has caught up, and prints what it found and fixed, read back from the audit topic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
from aiokafka import AIOKafkaConsumer, TopicPartition
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "deploy" / "local" / "stack"
KINDS = ("plaintext", "sse-s3", "wrong-key", "compliant")


def stack_env() -> dict[str, str]:
    """``deploy/local/stack env`` as a dict (values are plain, or single-quoted JSON)."""
    out = subprocess.run([str(STACK), "env"], check=True, capture_output=True, text=True).stdout
    env = {}
    for line in out.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        if name == "PATH":  # export PATH=<stack bin>:$PATH
            os.environ["PATH"] = f"{value.split(':')[0]}:{os.environ['PATH']}"
        elif line.startswith("export "):
            env[name] = value.strip("'")
    return env


def kes_create(env: dict[str, str], name: str) -> None:
    subprocess.run(["kes", "key", "create", name], env=os.environ | env, capture_output=True,
                   check=False)  # fmt: skip  # "already exists" is fine


def write_objects(s3: Any, bucket: str, required: str, other: str, per_kind: int) -> None:
    for i in range(per_kind):
        body = f"{bucket} object {i}\n".encode() * 64
        s3.put_object(Bucket=bucket, Key=f"plaintext/report {i}.txt", Body=body)
        s3.put_object(Bucket=bucket, Key=f"sse-s3/ledger+{i}.csv", Body=body,
                      ServerSideEncryption="AES256")  # fmt: skip
        s3.put_object(Bucket=bucket, Key=f"wrong-key/{i}.json", Body=body,
                      ServerSideEncryption="aws:kms", SSEKMSKeyId=other)  # fmt: skip
        s3.put_object(Bucket=bucket, Key=f"compliant/{i}.bin", Body=body,
                      ServerSideEncryption="aws:kms", SSEKMSKeyId=required)  # fmt: skip


async def start_group_at_end(bootstrap: str, topic: str, group_id: str) -> None:
    """Commit ``group_id`` at the end of ``topic``: the demo's enforcer skips the history (a new
    group would start from the earliest retained event)."""
    probe = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None)
    await probe.start()
    try:
        partitions = [TopicPartition(topic, n) for n in probe.partitions_for_topic(topic) or ()]
        ends = await probe.end_offsets(partitions)
    finally:
        await probe.stop()
    committer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id,
                                 enable_auto_commit=False)  # fmt: skip
    await committer.start()
    try:
        committer.assign(partitions)
        await committer.commit(ends)
    finally:
        await committer.stop()


async def read_audit(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest")  # fmt: skip
    await consumer.start()
    records: list[dict[str, Any]] = []
    try:
        while batch := await consumer.getmany(timeout_ms=1500):
            records += [json.loads(m.value) for ms in batch.values() for m in ms]
    finally:
        await consumer.stop()
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=25, help="objects per kind per bucket")
    args = parser.parse_args()
    env = stack_env()
    run_id = uuid.uuid4().hex[:6]
    s3 = boto3.client("s3", endpoint_url=env["LOCAL_S3_ENDPOINT"], region_name="us-east-1",
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                      config=Config(s3={"addressing_style": "path"}))  # fmt: skip
    group, audit_topic = f"demo-{run_id}", f"demo-audit-{run_id}"
    asyncio.run(start_group_at_end(env["LOCAL_KAFKA_BOOTSTRAP"], env["LOCAL_NOTIFY_TOPIC"], group))

    buckets = {f"demo-finance-{run_id}": "demo-finance-ek", f"demo-hr-{run_id}": "demo-hr-ek"}
    kes_create(env, "demo-finance-ek")
    kes_create(env, "demo-hr-ek")
    print(f"== writing {4 * args.objects} objects into each of {', '.join(buckets)}")
    for bucket, ek in buckets.items():
        other = "demo-hr-ek" if ek == "demo-finance-ek" else "demo-finance-ek"
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": env["LOCAL_NOTIFY_ARN"],
                                     "Events": ["s3:ObjectCreated:*"]}]})  # fmt: skip
        write_objects(s3, bucket, ek, other, args.objects)
        mc_env = os.environ | {
            "MC_HOST_local": env["LOCAL_S3_ENDPOINT"].replace(
                "http://", f"http://{env['AWS_ACCESS_KEY_ID']}:{env['AWS_SECRET_ACCESS_KEY']}@"
            )
        }
        print(f"$ mc encrypt set sse-kms {ek} local/{bucket}")
        subprocess.run(["mc", "--config-dir", tempfile.mkdtemp(prefix="demo-mc-"), "encrypt",
                        "set", "sse-kms", ek, f"local/{bucket}"],
                       env=mc_env, check=True, capture_output=True)  # fmt: skip

    print("== running: enforcer run --drain  (as the least-privilege enforcer user)")
    enforcer_env = os.environ | {k: v for k, v in env.items() if k.startswith("ENFORCER_")} | {
        "ENFORCER_KAFKA__GROUP_ID": group, "ENFORCER_KAFKA__AUDIT_TOPIC": audit_topic,
        "ENFORCER_KAFKA__DLQ_TOPIC": f"demo-dlq-{run_id}",
        "ENFORCER_KAFKA__BACKFILL_TOPIC": f"demo-backfill-{run_id}"}  # fmt: skip
    time.sleep(2)  # MinIO publishes notifications asynchronously
    started = time.monotonic()
    subprocess.run([str(Path(sys.executable).with_name("enforcer")), "--log-level", "WARNING",
                    "run", "--drain", "--idle", "3"], env=enforcer_env, check=True)  # fmt: skip
    elapsed = time.monotonic() - started - 3  # minus the idle wait that ends drain mode

    records = [r for r in asyncio.run(read_audit(env["LOCAL_KAFKA_BOOTSTRAP"], audit_topic))
               if r["bucket"] in buckets]  # fmt: skip
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        if record["action"] != "rewriting":  # an intent record; its outcome follows
            first.setdefault((record["bucket"], record["key"]), record)
    print(f"\n{'bucket':<22} {'verdict':<11} {'action':<12} objects")
    for (bucket, verdict, action), n in sorted(
        Counter((r["bucket"], r["verdict"], r["action"]) for r in first.values()).items()
    ):
        print(f"{bucket:<22} {verdict:<11} {action:<12} {n}")
    fixed = sum(r["action"] == "reencrypted" for r in first.values())
    noncompliant = [(b, k) for b, k in first if s3.head_object(Bucket=b, Key=k).get(
        "SSEKMSKeyId") != f"arn:aws:kms:{buckets[b]}"]  # fmt: skip
    print(f"\nfixed {fixed} of {len(first)} objects in {elapsed:.1f}s "
          f"({len(first) / max(elapsed, 0.001):.0f} objects/s, {len(records)} audit records "
          f"with the enforcer's own rewrites); non-compliant now: {len(noncompliant)}")  # fmt: skip
    return 0 if not noncompliant and len(first) == 8 * args.objects else 1


if __name__ == "__main__":
    raise SystemExit(main())
