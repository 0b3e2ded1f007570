"""Objects classified per second by ``enforcer scan``, against a concurrent HEAD loop; and the
scan's memory over time.

1. **setup** (not timed): a fresh bucket; ``--plaintext`` percent (default 1) of N objects
   (``-n``, default 20,000; the reported figure uses 100,000) are written as plaintext, then the
   bucket's default EK is set (the stack's default key) and the rest are written, so MinIO
   encrypts them: a bucket of mostly compliant objects. Writes use boto3 in 64 threads as the
   MinIO admin.
2. **scan**: the real ``enforcer scan s3://bucket --dry-run --no-progress`` as a child process,
   configured like the CLI with the stack's least-privilege identities (own audit topic). On
   MinIO it lists with ``metadata=true``: compliant objects are classified from the listing
   (their audit record is still published, one per object); the non-compliant ones are inspected
   with HEAD. Dry run, so the figure is classification, not rewriting. Its RSS is sampled from
   ``/proc/<pid>/status`` every 0.25 s; the report gives it at 10/25/50/75/100 % of the run.
3. **baseline**: a native concurrent HEAD loop over the same keys: aiobotocore, ``--heads``
   (default 64) requests in flight over as many pooled connections, the keys listed beforehand
   (not timed). This is what a scan costs without the listing extension: one request per object.

Result: objects/s of each and their ratio (target: the scan at least 5 times the HEAD loop);
``wall`` counts the whole child process (start-up, connections), ``active`` the scan itself (the
summary's ``seconds``). ``--check`` turns a missed target (on the active ratio), or RSS growing by
more than 25 % from 25 % to 100 % of the scan, into exit status 1. The bucket is deleted
afterwards (``--keep`` keeps it, ``--bucket`` reuses one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _stack import ENFORCER, admin_s3, delete_bucket, load_note, new_bucket, stack_env
from support import StackEnv


def fill_bucket(s3: Any, stack: StackEnv, count: int, plaintext_percent: float) -> str:
    bucket = new_bucket(s3, "scanbench")
    plain = int(count * plaintext_percent / 100)
    keys = [f"data/{n // 1000:04d}/{n:07d}" for n in range(count)]

    def put(key: str) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * 64)

    with ThreadPoolExecutor(64) as pool:
        list(pool.map(put, keys[:plain]))
        rule = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": stack.default_key}
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": rule}]
            },
        )
        list(pool.map(put, keys[plain:]))
    return bucket


def rss_sampler(pid: int, samples: list[tuple[float, int]], stop: threading.Event) -> None:
    status = Path(f"/proc/{pid}/status")
    while not stop.is_set():
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    samples.append((time.monotonic(), int(line.split()[1]) * 1024))
        except OSError:
            return
        stop.wait(0.25)


def run_scan(stack: StackEnv, bucket: str, concurrency: int | None) -> dict[str, Any]:
    env = {**os.environ, **stack.enforcer_env,
           "ENFORCER_KAFKA__AUDIT_TOPIC": f"bench-audit-{uuid.uuid4().hex[:8]}"}  # fmt: skip
    if concurrency:
        env["ENFORCER_CONCURRENCY"] = str(concurrency)
    checkpoint = Path(tempfile.gettempdir()) / f"scanbench-{uuid.uuid4().hex}.json"
    started = time.monotonic()
    proc = subprocess.Popen(  # noqa: S603 - our own entry point
        [str(ENFORCER), "--log-level", "WARNING", "scan", f"s3://{bucket}", "--dry-run",
         "--no-progress", "--checkpoint", str(checkpoint)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=rss_sampler, args=(proc.pid, samples, stop), daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()
    checkpoint.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise SystemExit(f"scan failed ({proc.returncode}):\n{stderr[-4000:]}")
    summary = json.loads(stdout)
    return {"seconds": elapsed, "summary": summary, "rss": rss_profile(samples, started, elapsed)}


def rss_profile(samples: list[tuple[float, int]], started: float, elapsed: float) -> dict[str, int]:
    """RSS (MiB) at 10/25/50/75/100 % of the run (the last sample at or before each point)."""
    profile = {}
    for share in (10, 25, 50, 75, 100):
        at = started + elapsed * share / 100
        before = [rss for t, rss in samples if t <= at] or [samples[0][1] if samples else 0]
        profile[f"{share}%"] = before[-1] // (1024 * 1024)
    profile["peak"] = max((rss for _, rss in samples), default=0) // (1024 * 1024)
    return profile


async def head_loop(stack: StackEnv, bucket: str, keys: list[str], inflight: int) -> float:
    """Seconds to HEAD every key with ``inflight`` concurrent aiobotocore requests."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    env = stack.enforcer_env
    config = AioConfig(s3={"addressing_style": "path"}, max_pool_connections=inflight,
                       retries={"max_attempts": 1})  # fmt: skip
    async with get_session().create_client(
        "s3",
        endpoint_url=env["ENFORCER_S3__ENDPOINT_URL"],
        region_name=stack.region,
        aws_access_key_id=env["ENFORCER_S3__ACCESS_KEY_ID"],
        aws_secret_access_key=env["ENFORCER_S3__SECRET_ACCESS_KEY"],
        config=config,
    ) as client:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for key in keys:
            queue.put_nowait(key)

        async def worker() -> None:
            while not queue.empty():
                await client.head_object(Bucket=bucket, Key=queue.get_nowait())

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(inflight)))
        return time.monotonic() - started


def list_keys(s3: Any, bucket: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [entry["Key"] for entry in page.get("Contents", [])]
    return keys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--objects", type=int, default=20_000, help="100,000 for the figure")
    parser.add_argument("--plaintext", type=float, default=1.0, help="percent non-compliant")
    parser.add_argument("--heads", type=int, default=64, help="HEADs in flight (baseline)")
    parser.add_argument("--concurrency", type=int, help="ENFORCER_CONCURRENCY for the scan")
    parser.add_argument("--bucket", help="reuse this filled bucket (skips setup)")
    parser.add_argument("--keep", action="store_true", help="keep the bucket afterwards")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    stack = stack_env()
    s3 = admin_s3(stack)
    started = time.monotonic()
    bucket = args.bucket or fill_bucket(s3, stack, args.objects, args.plaintext)
    setup = time.monotonic() - started
    try:
        keys = list_keys(s3, bucket)
        scan = run_scan(stack, bucket, args.concurrency)
        head_seconds = asyncio.run(head_loop(stack, bucket, keys, args.heads))
    finally:
        if not args.keep and not args.bucket:
            delete_bucket(s3, bucket)
    return report(len(keys), setup, scan, head_seconds, args)


def report(objects: int, setup: float, scan: dict[str, Any], head_seconds: float, args: Any) -> int:
    scan_rate = objects / scan["seconds"]
    head_rate = objects / head_seconds
    ratio = scan_rate / head_rate
    active_ratio = objects / scan["summary"]["seconds"] / head_rate
    rss = scan["rss"]
    flat = rss["100%"] <= rss["25%"] * 1.25  # the first quarter includes start-up (imports)
    result = {
        "objects": objects,
        "setup_seconds": round(setup, 1),
        "scan": {
            "seconds": round(scan["seconds"], 2),
            "objects_per_s": round(scan_rate),
            "active_seconds": scan["summary"]["seconds"],
            "active_objects_per_s": round(objects / scan["summary"]["seconds"]),
            "classified_from_listing": scan["summary"]["classified_from_listing"],
            "verdicts": scan["summary"]["verdicts"],
            "rss_mib": rss,
        },
        "head_loop": {
            "seconds": round(head_seconds, 2),
            "objects_per_s": round(head_rate),
            "in_flight": args.heads,
            "client": "aiobotocore",
        },
        "ratio": round(ratio, 2),
        "active_ratio": round(active_ratio, 2),
        "target_ratio": 5.0,
        "rss_flat": flat,
        "machine": load_note(),
    }
    print(json.dumps(result, indent=2))
    return 1 if args.check and (active_ratio < 5.0 or not flat) else 0


if __name__ == "__main__":
    raise SystemExit(main())
