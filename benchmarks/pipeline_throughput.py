"""Objects per second through the whole enforcer on the local stack, against hand-done rewrites.

One round (``--rounds``, default 3):

1. **enforce**: a fresh bucket with notifications to Kafka; the enforcer's consumer group is
   committed at the end of the notification topic (tests/integration/harness.py); N (``-n``,
   default 300) plaintext objects of ``--object-size`` (4 KiB) are written; the bucket's default
   EK (a fresh KES key) is set *afterwards*, so every object is non-compliant; once MinIO's N
   notifications are in Kafka, the real enforcer (``run_service`` in drain mode, configured like
   ``enforcer run``: the stack's least-privilege identities, strategy ``sse-kms``) handles them:
   notification → Kafka → resolve → HEAD → tags → rewrite with If-Match → verify → audit record →
   commit. Its own rewrites raise N more notifications, which it handles in the same drain as
   cheap ``compliant`` events.
2. **baseline**: N plaintext objects in another bucket, rewritten by hand, one after the other,
   with boto3: GET, then PUT with ``If-Match`` and SSE-KMS under the same key: the least work a
   safe in-place re-encryption needs per object (no HEAD, tags, verify, audit or Kafka).
3. **compliant**: N objects written into a bucket whose default EK is already set (MinIO
   encrypts them), then drained: the HEAD-only path every enforcer rewrite also triggers.

Rates: ``active`` = objects / (last audit timestamp - first event's start), the enforcer's
steady throughput; ``wall`` = objects / the whole drain call, including the consumer joining its
group and the idle period (``--idle``) after which drain mode stops. The ratio is
enforce active / baseline. Telemetry is configured as the CLI does (SDK, no exporter).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _stack; it adds tests/integration

from _stack import admin_s3, delete_bucket, load_note, new_bucket, stack_env
from harness import EnforcerRun
from support import StackEnv, kes_client, read_notifications

from enforcer import __version__, telemetry
from enforcer.app import run_service
from enforcer.core.policy import Mode


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--objects", type=int, default=300, help="objects per phase (300)")
    parser.add_argument("--object-size", type=int, default=4096, help="bytes (4096)")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions (3)")
    parser.add_argument("--concurrency", type=int, default=None, help="override the enforcer's")
    parser.add_argument("--idle", type=float, default=1.0, help="drain-mode idle seconds (1.0)")
    parser.add_argument(
        "--spans",
        action="store_true",
        help="record spans in memory and print where the enforce phase spends its time "
        "(adds a synchronous span processor: slower)",
    )
    return parser.parse_args(argv)


@dataclass
class Drained:
    objects: int  # first-time events of the phase's objects
    follow_ups: int  # further events (the enforcer's own rewrites)
    active: float  # seconds from the first event's start to the last audit record
    wall: float  # seconds in run_service, start-up and idle tail included
    outcomes: dict[tuple[str, str], int]

    @property
    def active_rate(self) -> float:
        return self.objects / self.active

    @property
    def wall_rate(self) -> float:
        return self.objects / self.wall


# ---------------------------------------------------------------- stack chores


def create_key(stack: StackEnv) -> str:
    name = f"bench-{uuid.uuid4().hex[:12]}"
    with kes_client(stack) as kes:
        response = kes.put(f"/v1/key/create/{name}")
        response.raise_for_status()
    return name


def set_default_key(s3: Any, bucket: str, key: str) -> None:
    rule = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule}]},
    )


def notify(stack: StackEnv, s3: Any, bucket: str) -> None:
    queue = {"QueueArn": stack.notify_arn, "Events": ["s3:ObjectCreated:*"]}
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [queue]}
    )


def write_objects(s3: Any, bucket: str, n: int, size: int) -> list[str]:
    """N objects of ``size`` random bytes, written 8 at a time (setup, not measured)."""
    keys = [f"obj-{i:05d}" for i in range(n)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=os.urandom(size)), keys))
    return keys


# ---------------------------------------------------------------- the three phases


async def drain(stack: StackEnv, run: EnforcerRun, bucket: str, n: int, idle: float) -> Drained:
    """Wait for the N notifications, run the enforcer until idle, read its audit records."""
    await read_notifications(stack, bucket, n, timeout=120)
    settings = run.settings()
    started = time.perf_counter()
    await run_service(settings, Mode.ENFORCE, drain_idle=idle)
    wall = time.perf_counter() - started
    records = await run.audit(bucket)
    outcomes: dict[tuple[str, str], int] = {}
    seen: set[str] = set()
    for record in records:
        if record["key"] not in seen:  # the first record per object is its own event
            seen.add(record["key"])
            pair = (record["verdict"], record["action"])
            outcomes[pair] = outcomes.get(pair, 0) + 1
    ends = [datetime.fromisoformat(r["timestamp"]) for r in records]
    starts = [
        e - timedelta(milliseconds=r["duration_ms"]) for e, r in zip(ends, records, strict=True)
    ]
    active = (max(ends) - min(starts)).total_seconds()
    return Drained(len(seen), len(records) - len(seen), active, wall, outcomes)


async def enforce_phase(stack: StackEnv, s3: Any, args: argparse.Namespace, ek: str) -> Drained:
    bucket = new_bucket(s3, "bench-enforce")
    try:
        notify(stack, s3, bucket)
        run = new_run(stack, args)
        await run.start_at_end()
        write_objects(s3, bucket, args.objects, args.object_size)
        set_default_key(s3, bucket, ek)
        return await drain(stack, run, bucket, args.objects, args.idle)
    finally:
        delete_bucket(s3, bucket)


async def baseline_phase(stack: StackEnv, s3: Any, args: argparse.Namespace, ek: str) -> float:
    """Sequential GET + PUT(If-Match, SSE-KMS) per object; return objects/s."""
    bucket = new_bucket(s3, "bench-baseline")
    try:
        notify(stack, s3, bucket)  # MinIO publishes for these writes too, as for the enforcer's
        keys = write_objects(s3, bucket, args.objects, args.object_size)
        started = time.perf_counter()
        for key in keys:
            got = s3.get_object(Bucket=bucket, Key=key)
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=got["Body"].read(),
                IfMatch=got["ETag"],
                ServerSideEncryption="aws:kms",
                SSEKMSKeyId=ek,
            )
        rate = len(keys) / (time.perf_counter() - started)
        # Let MinIO publish all 2N events before the next phase commits its group at the end.
        await read_notifications(stack, bucket, 2 * len(keys), timeout=120)
        return rate
    finally:
        delete_bucket(s3, bucket)


async def compliant_phase(stack: StackEnv, s3: Any, args: argparse.Namespace, ek: str) -> Drained:
    bucket = new_bucket(s3, "bench-compliant")
    try:
        set_default_key(s3, bucket, ek)
        notify(stack, s3, bucket)
        run = new_run(stack, args)
        await run.start_at_end()
        write_objects(s3, bucket, args.objects, args.object_size)
        return await drain(stack, run, bucket, args.objects, args.idle)
    finally:
        delete_bucket(s3, bucket)


def new_run(stack: StackEnv, args: argparse.Namespace) -> EnforcerRun:
    """An enforcer with its own group and topics; production's bucket-default cache (60 s)."""
    extra = {"ENFORCER_BUCKET_DEFAULT_TTL": "60"}
    if args.concurrency is not None:
        extra["ENFORCER_CONCURRENCY"] = str(args.concurrency)
    return EnforcerRun(stack, extra_env=extra)


# ---------------------------------------------------------------- report


def summary(values: list[float], digits: int = 1) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return (
        f"{statistics.median(values):.{digits}f}  "
        f"({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def report(args: argparse.Namespace, concurrency: int, results: dict[str, list[Any]]) -> None:
    enforce: list[Drained] = results["enforce"]
    compliant: list[Drained] = results["compliant"]
    baseline: list[float] = results["baseline"]
    print(
        f"pipeline throughput: {args.objects} objects of {args.object_size} B per phase, "
        f"{args.rounds} round(s), enforcer concurrency {concurrency}, strategy sse-kms"
    )
    print(f"{'phase':<34} {'objects/s median (min-max)':>30}")
    print(f"{'baseline: boto3 GET+PUT(If-Match)':<34} {summary(baseline):>30}")
    print(f"{'enforce (active)':<34} {summary([d.active_rate for d in enforce]):>30}")
    print(f"{'enforce (wall, incl. start/idle)':<34} {summary([d.wall_rate for d in enforce]):>30}")
    print(
        f"{'compliant, HEAD only (active)':<34} {summary([d.active_rate for d in compliant]):>30}"
    )
    print(f"{'compliant (wall)':<34} {summary([d.wall_rate for d in compliant]):>30}")
    ratios = [d.active_rate / b for d, b in zip(enforce, baseline, strict=True)]
    print(f"ratio enforce active / baseline, per round: {summary(ratios, 2)}")
    follow = [d.follow_ups for d in enforce]
    print(
        f"outcomes (first record per object): enforce {enforce[-1].outcomes}, "
        f"compliant {compliant[-1].outcomes}; follow-up events handled in the enforce drain: "
        f"{follow}"
    )
    print(f"({load_note()})")


def span_table(spans: list[Any]) -> None:
    """Count, mean and total duration per span name, biggest total first."""
    totals: dict[str, list[float]] = {}
    for span in spans:
        totals.setdefault(span.name, []).append((span.end_time - span.start_time) / 1e6)
    print(f"{'span (enforce phase)':<24} {'count':>6} {'mean ms':>8} {'total s':>8}")
    for name, values in sorted(totals.items(), key=lambda kv: -sum(kv[1]))[:12]:
        print(
            f"{name:<24} {len(values):>6} {statistics.mean(values):>8.1f} {sum(values) / 1e3:>8.1f}"
        )


async def main_async(args: argparse.Namespace) -> int:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # "topic not found" before auto-create
    stack = stack_env()
    s3 = admin_s3(stack, read_timeout=60)
    spans = InMemorySpanExporter() if args.spans else None
    telemetry.configure(__version__, extra_exporter=spans)  # as `enforcer run` does (+ spans)
    ek = create_key(stack)
    concurrency = new_run(stack, args).settings().concurrency
    results: dict[str, list[Any]] = {"enforce": [], "baseline": [], "compliant": []}
    for _ in range(args.rounds):
        if spans is not None:
            spans.clear()
        results["enforce"].append(await enforce_phase(stack, s3, args, ek))
        enforce_spans = list(spans.get_finished_spans()) if spans is not None else []
        results["baseline"].append(await baseline_phase(stack, s3, args, ek))
        results["compliant"].append(await compliant_phase(stack, s3, args, ek))
    report(args, concurrency, results)
    if spans is not None:
        span_table(enforce_spans)
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
