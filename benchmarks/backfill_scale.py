"""A backfill of a large bucket (default 1,000,000 objects): one lister, N key ranges in one
process, N ranges over 3 ``enforcer run`` replicas — objects/s and RSS per process — against the
store's own listing rate, measured in the same run by a native client.

1. **setup** (once; not timed): the bucket ``--bucket`` (default ``bench-backfill-1m``) is filled
   by the native minio-go client (``native/``, mode ``put``, 32 in flight) with ``-n`` objects of
   64 bytes under the stack's default key (so they are compliant), keys ``pNNN/NNNNNNN`` spread
   over 64 top-level prefixes. A bucket tag records the count, so later runs reuse the bucket.
2. **native**: the same client lists the bucket with MinIO's metadata extension, as the scan
   does — once with one lister, once with ``--listers`` listers over the 64 prefixes.
3. **enforcer**, each as real child processes with the stack's least-privilege identities, in
   audit mode (dry run: classification, as on a first backfill), every object's audit record
   published to Kafka (a fresh audit topic per run, deleted afterwards):
   * ``scan --dry-run``: one lister;
   * ``scan --dry-run --split N``: N listers in one process;
   * ``scan --split N --enqueue`` to 3 ``enforcer run --drain`` replicas (``ENFORCER_MODE=audit``,
     2 ranges at once each): the rate is the backfill's objects over the time from the first
     range's start to the last range's last commit, read from the committed progress.

RSS is sampled from ``/proc/<pid>/status`` every 0.5 s (peak per process). Each figure is printed
with the load average at its end; timings are never asserted. ``--only`` runs some phases.
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
from pathlib import Path
from typing import Any

from _stack import ENFORCER, admin_s3, load_note, process_tree, run_native, stack_env
from support import StackEnv

COUNT_TAG = "sse-enforcer-bench-objects"
FANOUT = 64
PHASES = ("native", "one", "split", "replicas")


def ensure_bucket(s3: Any, stack: StackEnv, bucket: str, count: int) -> float:
    """Fill ``bucket`` with ``count`` compliant objects unless its tag says it holds them."""
    try:
        tags = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
        if {t["Key"]: t["Value"] for t in tags}.get(COUNT_TAG) == str(count):
            return 0.0
    except s3.exceptions.ClientError:
        pass
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)
    rule = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": stack.default_key}
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": rule}]})  # fmt: skip
    started = time.monotonic()
    run_native(stack, "-mode", "put", "-bucket", bucket, "-prefix", "p", "-n", str(count),
           "-size", "64", "-fanout", str(FANOUT), "-concurrency", "32")  # fmt: skip
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": COUNT_TAG,
                                                              "Value": str(count)}]})  # fmt: skip
    return time.monotonic() - started


class RssSampler:
    """Peak RSS (MiB) of a set of processes, each with its children (an ``enforcer run``'s
    workers), sampled every 0.5 s in a thread."""

    def __init__(self) -> None:
        self.peaks: dict[int, float] = {}
        self._pids: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, pid: int) -> None:
        self._pids.append(pid)
        if not self._thread.is_alive():
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in list(self._pids):
                rss = sum(_rss_kib(each) for each in process_tree(pid)) / 1024
                self.peaks[pid] = max(self.peaks.get(pid, 0.0), rss)
            self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()


def _rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0  # gone
    return next((int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmRSS:"), 0)


def enforcer_env(stack: StackEnv, tag: str, **extra: str) -> dict[str, str]:
    topics = {
        "ENFORCER_KAFKA__AUDIT_TOPIC": f"bench-audit-{tag}",
        "ENFORCER_KAFKA__GROUP_ID": f"bench-{tag}",
        "ENFORCER_KAFKA__BACKFILL_TASKS_TOPIC": f"bench-tasks-{tag}",
        "ENFORCER_KAFKA__BACKFILL_PROGRESS_TOPIC": f"bench-progress-{tag}",
        # A replica of its own: one process, starting at the live topics' end (a new group
        # would otherwise read every retained notification of the stack first).
        "ENFORCER_KAFKA__BACKFILL_TOPIC": f"bench-backfill-{tag}",
        "ENFORCER_KAFKA__AUTO_OFFSET_RESET": "latest",
        "ENFORCER_WORKERS": "1",
    }
    return {**os.environ, **stack.enforcer_env, **topics, **extra}


def scan(stack: StackEnv, bucket: str, split: int | None) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    checkpoint = Path(tempfile.gettempdir()) / f"bench-{tag}.json"
    args = [str(ENFORCER), "--log-level", "WARNING", "scan", f"s3://{bucket}", "--dry-run",
            "--no-progress", "--checkpoint", str(checkpoint)]  # fmt: skip
    if split:
        args += ["--split", str(split)]
    sampler, started = RssSampler(), time.monotonic()
    proc = subprocess.Popen(args, env=enforcer_env(stack, tag), stdout=subprocess.PIPE,  # noqa: S603
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    sampler.watch(proc.pid)
    stdout, stderr = proc.communicate()
    wall = time.monotonic() - started
    sampler.stop()
    checkpoint.unlink(missing_ok=True)
    asyncio.run(delete_topics(stack, tag))
    if proc.returncode != 0:
        raise SystemExit(f"scan failed ({proc.returncode}):\n{stderr[-3000:]}")
    summary = json.loads(stdout)
    return {"objects": summary["objects"], "seconds": summary["seconds"], "wall": round(wall, 1),
            "objects_per_s": round(summary["objects"] / summary["seconds"]),
            "rss_mib": [round(v) for v in sampler.peaks.values()], "load": load_note()}  # fmt: skip


def replicas(stack: StackEnv, bucket: str, split: int, count: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    env = enforcer_env(stack, tag, ENFORCER_MODE="audit", ENFORCER_BACKFILL_RANGES="2")
    sampler = RssSampler()
    procs = [subprocess.Popen([str(ENFORCER), "--log-level", "WARNING", "run", "--drain",  # noqa: S603
                               "--idle", "10"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(count)]  # fmt: skip
    for proc in procs:
        sampler.watch(proc.pid)
    try:
        time.sleep(5)  # the replicas join their groups (a rebalance costs a range a restart)
        enqueue = subprocess.run([str(ENFORCER), "--log-level", "WARNING", "scan",  # noqa: S603
                                  f"s3://{bucket}", "--split", str(split), "--enqueue"],
                                 env=env, capture_output=True, text=True, check=False)  # fmt: skip
        if enqueue.returncode != 0:
            raise SystemExit(f"enqueue failed:\n{enqueue.stderr[-3000:]}")
        backfill_id = json.loads(enqueue.stdout)["backfill_id"]
        errors = [proc.communicate(timeout=7200)[1] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        sampler.stop()
    if any(proc.returncode for proc in procs):
        raise SystemExit("a replica failed:\n" + "\n".join(e[-2000:] for e in errors))
    status = subprocess.run([str(ENFORCER), "status", "--backfill", backfill_id, "--json"],  # noqa: S603
                            env=env, capture_output=True, text=True, check=True)  # fmt: skip
    [summary] = json.loads(status.stdout)
    asyncio.run(delete_topics(stack, tag))
    return {"objects": summary["objects"], "ranges_done": summary["ranges_done"],
            "objects_per_s": round(summary["objects_per_second"]),
            "rss_mib": [round(v) for v in sampler.peaks.values()], "load": load_note()}  # fmt: skip


async def delete_topics(stack: StackEnv, tag: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = [t for t in existing if t.endswith(tag) and t.startswith("bench-")]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--objects", type=int, default=1_000_000)
    parser.add_argument("--bucket", default="bench-backfill-1m")
    parser.add_argument("--split", type=int, default=12, help="ranges (one task each)")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--listers", type=int, default=12, help="native listers in parallel")
    parser.add_argument("--only", nargs="+", choices=PHASES, default=list(PHASES))
    args = parser.parse_args()

    stack = stack_env()
    setup = ensure_bucket(admin_s3(stack), stack, args.bucket, args.objects)
    results: dict[str, Any] = {"objects": args.objects, "setup_seconds": round(setup)}
    if "native" in args.only:
        one = run_native(stack, "-mode", "list", "-bucket", args.bucket, "-prefix", "p")
        many = run_native(stack, "-mode", "list", "-bucket", args.bucket, "-prefix", "p",
                          "-fanout", str(FANOUT), "-concurrency", str(args.listers))  # fmt: skip
        results["native_list"] = {"one_lister": round(one["per_second"]),
                                  f"{args.listers}_listers": round(many["per_second"]),
                                  "objects": one["objects"], "load": load_note()}  # fmt: skip
        print(json.dumps(results["native_list"]), flush=True)
    for phase, run in (("one", lambda: scan(stack, args.bucket, None)),
                       ("split", lambda: scan(stack, args.bucket, args.split)),
                       ("replicas", lambda: replicas(stack, args.bucket, args.split,
                                                     args.replicas))):  # fmt: skip
        if phase in args.only:
            results[phase] = run()
            print(json.dumps({phase: results[phase]}), flush=True)
    native_rate = results.get("native_list", {}).get("one_lister")
    if native_rate:
        for phase in ("one", "split", "replicas"):
            if phase in results:
                results[phase]["vs_native_one_lister"] = round(
                    results[phase]["objects_per_s"] / native_rate, 2
                )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
