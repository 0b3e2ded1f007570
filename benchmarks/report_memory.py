"""``enforcer report`` over a long audit topic: is its memory flat?

For each size N (default 100,000 and 1,000,000) the script fills a fresh topic on the local
stack's Kafka with N audit records of N distinct objects (the worst case for the report: every
record is an object it must remember), runs the real ``enforcer report --json`` on it as a child
process, and reads the child's peak RSS from ``wait4`` (its own rusage, nobody else's). It prints
RSS, the time the report took and the load average beside it, and the ratio of the largest RSS to
the smallest: flat means close to 1 while N grows tenfold. ``--check`` exits 1 above
``--max-ratio``. The topics are deleted afterwards.

    .venv/bin/python benchmarks/report_memory.py                 # 100k and 1M (~6 min on 2 cores)
    .venv/bin/python benchmarks/report_memory.py --records 20000 200000 --check
    .venv/bin/python benchmarks/report_memory.py --enforcer-src /path/to/older/checkout  # before
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _stack import ENFORCER, stack_env
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

VERDICTS = [("compliant", "none"), ("plaintext", "reencrypted"), ("wrong_key", "reencrypted"),
            ("sse_s3", "would_reencrypt"), ("wrong_key", "failed")]  # fmt: skip


def audit_record(n: int, start: datetime) -> bytes:
    """An audit record as the service writes it, for object n (distinct per n)."""
    verdict, action = VERDICTS[n % len(VERDICTS)]
    bucket = f"bench-{n % 7}"
    record = {
        "schema_version": 2, "event_id": uuid.UUID(int=n).hex, "event_name": "s3:ObjectCreated:Put",
        "bucket": bucket, "key": f"data/2026/12/{n:09d}.parquet", "version_id": None,
        "observed_sse": "AES256" if verdict == "sse_s3" else "aws:kms",
        "observed_kms_key": f"ek-{n % 3}", "observed_etag": f"{n:032x}",
        "required_key": f"ek-{n % 2}", "rule_source": "bucket-default", "verdict": verdict,
        "action": action, "reason": "key_missing: no such key" if action == "failed" else None,
        "attempts": 1, "duration_ms": 12.5, "trace_id": f"{n:032x}", "mode": "enforce",
        "timestamp": (start + timedelta(milliseconds=n)).isoformat(), "enforcer_version": "0.1.0",
    }  # fmt: skip
    return json.dumps(record).encode()


async def fill_topic(bootstrap: str, topic: str, count: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=1024 * 1024, acks=1)  # fmt: skip
    await producer.start()
    start = datetime(2026, 12, 1, tzinfo=UTC)
    try:
        pending = []
        for n in range(count):
            value = audit_record(n, start)
            pending.append(await producer.send(topic, value=value, key=value[:16]))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()


def run_report(
    bootstrap: str, topic: str, source: Path | None
) -> tuple[float, float, dict[str, object]]:
    """(peak RSS MiB, seconds, the report's figures) of one ``enforcer report``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENFORCER_")}
    env |= {"ENFORCER_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "ENFORCER_KAFKA__AUDIT_TOPIC": topic}
    if source is not None:  # an older checkout's package, ahead of this one
        env["PYTHONPATH"] = str(source)
    with tempfile.TemporaryDirectory() as scratch, tempfile.TemporaryFile("w+") as out:
        started = time.monotonic()
        args = ["--log-level", "WARNING", "report", "--html", str(Path(scratch) / "report.html")]
        if source is None:
            args.append("--json")
        child = subprocess.Popen(  # noqa: S603 - our own entry point
            [str(ENFORCER), *args], stdout=out, stderr=subprocess.DEVNULL, env=env, cwd=scratch
        )
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.monotonic() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"enforcer report exited {child.returncode}")
        out.seek(0)
        text = out.read()
    if source is not None:  # no --json before it existed: the records count from the tables
        count = int(text.split(" records from ", 1)[0].replace(",", ""))
        return usage.ru_maxrss / 1024, elapsed, {"records": count}
    return usage.ru_maxrss / 1024, elapsed, json.loads(text)  # ru_maxrss is KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--max-ratio", type=float, default=1.5,
                        help="--check: the largest RSS over the smallest at most this")  # fmt: skip
    parser.add_argument("--check", action="store_true", help="exit 1 when RSS is not flat")
    parser.add_argument("--enforcer-src", type=Path, metavar="DIR",
                        help="run an older checkout's report (its repository root)")  # fmt: skip
    args = parser.parse_args()
    stack = stack_env()
    rows, topics = [], []
    try:
        for count in args.records:
            topic = f"bench-report-{uuid.uuid4().hex[:8]}"
            topics.append(topic)
            started = time.monotonic()
            asyncio.run(fill_topic(stack.kafka_bootstrap, topic, count))
            fill = time.monotonic() - started
            rss, seconds, figures = run_report(stack.kafka_bootstrap, topic, args.enforcer_src)
            assert figures["records"] == count, figures["records"]
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            rows.append((count, rss, seconds))
            print(f"{count:>9,} records ({fill:5.1f} s to produce): report peak RSS {rss:6.1f} MiB,"
                  f" {seconds:6.1f} s ({count / seconds:,.0f} records/s), load average {load}",
                  flush=True)  # fmt: skip
    finally:
        if topics:
            asyncio.run(delete_topics(stack.kafka_bootstrap, topics))
    ratio = max(r[1] for r in rows) / min(r[1] for r in rows)
    print(f"RSS ratio largest/smallest: {ratio:.2f} over {max(args.records) // min(args.records)}x"
          " the records")  # fmt: skip
    return 1 if args.check and ratio > args.max_ratio else 0


if __name__ == "__main__":
    sys.exit(main())
