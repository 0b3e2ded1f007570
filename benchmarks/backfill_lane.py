"""Live writes beside a queued backfill: PUT→compliant latency with and without one, in one run.

Two phases on the local stack, each with a fresh enforcer (``enforcer run`` as a child process,
configured like production: least-privilege identities, strategy sse-kms) and fresh buckets:

1. **none**: the enforcer runs idle and warm; plaintext objects are written to a live bucket at
   ``--rate`` per second for ``--seconds``.
2. **backfill**: first ``--backfill`` plaintext objects (written by the native client, without
   notifications) are enqueued with the real ``enforcer scan --enqueue`` — one backfill event
   each on the backfill topic — and their bucket's notifications are turned on, so each
   backfill rewrite publishes its own notification as it would in production. Then the same
   paced live writes as in phase 1, while the enforcer works through the backfill.

Latency runs from each live PUT's response to the audit record of its verified rewrite, split at
the moment MinIO published its notification (the Kafka record's timestamp). The figure to read
is the ratio of the p99s (target: the backfill phase within 2x of none), printed, never
asserted. Also printed: how many backfill events the enforcer handled while the live writes
went on (the lane is not starved), and the load average around each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _stack; it adds tests/integration

from _stack import (
    ENFORCER,
    admin_s3,
    delete_bucket,
    load_note,
    native_binary,
    new_bucket,
    stack_env,
)
from aiokafka import AIOKafkaConsumer
from harness import EnforcerRun, write_policy
from pipeline_throughput import create_key, notify
from support import StackEnv
from vs_native import (
    TMP,
    end_offsets,
    native,
    notified_at,
    paced_puts,
    percentile,
)

from enforcer.core.events import BACKFILL_EVENT_NAME


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="live PUTs/s (50)")
    parser.add_argument("--seconds", type=float, default=30.0, help="live writes for (30)")
    parser.add_argument("--backfill", type=int, default=50_000, help="backfill events (50000)")
    parser.add_argument("--object-size", type=int, default=4096, help="bytes (4096)")
    parser.add_argument("--rounds", type=int, default=1, help="none/backfill pairs (1)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


@dataclass
class AuditWatch:
    """The run's audit topic, read continuously: when each live object was verified
    compliant, and when each backfill event was finished."""

    consumer: AIOKafkaConsumer
    live: str
    compliant_at: dict[str, float] = field(default_factory=dict)
    backfill_done: list[float] = field(default_factory=list)

    async def pump(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for message in records:
                    self._take(json.loads(message.value or b"null"))

    def _take(self, record: dict[str, Any]) -> None:
        when = datetime.fromisoformat(record["timestamp"]).timestamp()
        if record["event_name"] == BACKFILL_EVENT_NAME and record["action"] != "rewriting":
            self.backfill_done.append(when)
        elif record["bucket"] == self.live and record["action"] == "reencrypted":
            self.compliant_at.setdefault(record["key"], when)


@contextlib.asynccontextmanager
async def audit_watch(run: EnforcerRun, live: str) -> Any:
    consumer = AIOKafkaConsumer(
        run.audit_topic,
        bootstrap_servers=run.stack.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    watch = AuditWatch(consumer, live)
    task = asyncio.create_task(watch.pump())
    try:
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()


def enqueue(run: EnforcerRun, stack: StackEnv, bucket: str, expected: int) -> float:
    """``enforcer scan --enqueue`` over ``bucket``; its duration in seconds."""
    env = dict(os.environ) | stack.enforcer_env | run.overrides()
    env["XDG_STATE_HOME"] = str(TMP / "sse-enforcer-bench-state")
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603 - our venv's own command
        [str(ENFORCER), "--log-level", "WARNING", "scan", f"s3://{bucket}", "--enqueue",
         "--no-progress"],
        env=env, capture_output=True, text=True, check=False, timeout=3600,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"scan --enqueue failed: {done.stderr[-2000:]}")
    enqueued = json.loads(done.stdout)["actions"].get("enqueued", 0)
    if enqueued != expected:
        raise SystemExit(f"scan --enqueue published {enqueued}, not {expected}")
    return time.monotonic() - started


def start_enforcer(run: EnforcerRun, stack: StackEnv) -> subprocess.Popen[bytes]:
    env = dict(os.environ) | stack.enforcer_env | run.overrides() | {"ENFORCER_WORKERS": "1"}
    log = (TMP / f"enforcer-{run.tag}.log").open("wb")
    return subprocess.Popen([str(ENFORCER), "run"], env=env, stdout=log, stderr=log)  # noqa: S603


async def until_compliant(watch: AuditWatch, keys: set[str], limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while not keys <= watch.compliant_at.keys():
        if time.monotonic() > deadline:
            missing = len(keys - watch.compliant_at.keys())
            raise SystemExit(f"{missing} live objects not compliant after {limit}s")
        await asyncio.sleep(0.5)


async def phase(stack: StackEnv, s3: Any, args: argparse.Namespace, ek: str,
                backfill: int) -> dict[str, Any]:  # fmt: skip
    """One phase: paced live writes, with ``backfill`` events queued before them (or none)."""
    live = new_bucket(s3, "bench-live")
    queued = new_bucket(s3, "bench-backfill") if backfill else None
    result: dict[str, Any] = {"backfill": backfill}
    try:
        notify(stack, s3, live)
        rules = [{"bucket": b, "key": ek} for b in (live, queued) if b]
        run = EnforcerRun(stack, policy_file=write_policy(TMP / f"{live}.yaml", *rules))
        await run.start_at_end()
        if queued is not None:
            native(stack, "put", queued, backfill, size=args.object_size)
            notify(stack, s3, queued)  # from now on the backfill rewrites publish, as in prod
            result["enqueue_s"] = enqueue(run, stack, queued, backfill)
        result["load_before"] = load_note()
        proc = start_enforcer(run, stack)
        try:
            async with audit_watch(run, live) as watch:
                s3.put_object(Bucket=live, Key="warm-up", Body=b"warm-up")  # joined and warm
                await until_compliant(watch, {"warm-up"}, limit=120)
                since = await end_offsets(stack)
                window_start = time.time()
                puts = await asyncio.to_thread(
                    paced_puts, s3, live, args.rate, args.seconds, args.object_size
                )
                await until_compliant(watch, set(puts))
                window_end = max(watch.compliant_at[k] for k in puts)
                done = [t for t in watch.backfill_done if window_start <= t <= window_end]
                result["backfill_in_window"] = len(done)
                result["backfill_before"] = sum(1 for t in watch.backfill_done if t < window_start)
                result["backfill_rate"] = len(done) / max(window_end - window_start, 1e-9)
                compliant_at = {k: watch.compliant_at[k] for k in puts}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
        result["load_after"] = load_note()
        published = await notified_at(stack, live, since)
        waits = sorted((compliant_at[k] - t) * 1000 for k, t in puts.items())
        to_kafka = sorted((published[k] - t) * 1000 for k, t in puts.items() if k in published)
        enforcer = sorted((compliant_at[k] - published[k]) * 1000 for k in puts if k in published)
        result |= {
            "written": len(puts),
            "p50_ms": percentile(waits, 0.5),
            "p99_ms": percentile(waits, 0.99),
            "max_ms": waits[-1],
            "notify_ms": (percentile(to_kafka, 0.5), percentile(to_kafka, 0.99)),
            "enforcer_ms": (percentile(enforcer, 0.5), percentile(enforcer, 0.99)),
        }
        return result
    finally:
        delete_bucket(s3, live)
        if queued is not None:
            delete_bucket(s3, queued)


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    print(
        f"\nlive: {args.rate:.0f} PUT/s for {args.seconds:.0f} s, {args.object_size} B objects; "
        f"backfill: {args.backfill} events queued before the live writes"
    )
    print(
        "| backfill queued | live PUT→compliant p50 / p99 / max | of which MinIO p50 / p99 | "
        "of which the enforcer p50 / p99 | backfill handled meanwhile (before the live writes) | "
        "load before → after |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        (n50, n99), (e50, e99) = r["notify_ms"], r["enforcer_ms"]
        meanwhile = (
            f"{r['backfill_in_window']:,} ({r['backfill_rate']:.0f}/s; {r['backfill_before']:,} "
            "before)"
            if r["backfill"]
            else "-"
        )
        print(
            f"| {r['backfill']:,} | {r['p50_ms'] / 1000:.2f} / {r['p99_ms'] / 1000:.2f} / "
            f"{r['max_ms'] / 1000:.2f} s | {n50 / 1000:.2f} / {n99 / 1000:.2f} s | "
            f"{e50 / 1000:.2f} / {e99 / 1000:.2f} s | {meanwhile} | "
            f"{r['load_before']} → {r['load_after']} |"
        )
    for none, full in zip(results[::2], results[1::2], strict=True):
        print(
            f"p99 with the backfill / without: {full['p99_ms'] / none['p99_ms']:.2f} (target ≤ 2); "
            f"enqueueing {full['backfill']:,} events took {full['enqueue_s']:.0f} s"
        )


async def main_async(args: argparse.Namespace) -> int:
    stack = stack_env()
    s3 = admin_s3(stack, read_timeout=60)
    ek = create_key(stack)
    native_binary()  # build before measuring
    results = []
    for _ in range(args.rounds):
        results.append(await phase(stack, s3, args, ek, backfill=0))
        results.append(await phase(stack, s3, args, ek, backfill=args.backfill))
    report(args, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
