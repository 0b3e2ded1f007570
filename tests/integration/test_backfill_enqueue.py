"""Distributed backfill on the real stack: ``enforcer scan --enqueue`` lists and publishes one
event per non-compliant object to the backfill topic; three ``enforcer run`` replicas of one
consumer group share the rewrites; every object ends compliant."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from cli_runner import Cli
from harness import read_raw, set_default_key
from replicas import Replica
from support import MakeBucket, MakeKey, StackEnv
from waiting import eventually

from enforcer.core.events import BACKFILL_EVENT_NAME, BACKFILL_EVENT_SOURCE

#: Seconds a replica waits idle before it stops: longer than ``scan --enqueue`` takes to start
#: and publish on a loaded machine (with 6 s, all three stopped before the first event came).
IDLE = 20


@asynccontextmanager
async def replicas(cli: Cli, count: int, log_dir: Path) -> AsyncIterator[list[Replica]]:
    """``count`` ``enforcer run --drain`` processes of the run's group, each ready (partitions
    assigned, /readyz 200) before the block starts; killed if the block fails."""
    procs = [
        await Replica.start(
            cli.env(), log_dir / f"replica-{i}.log", "INFO", "--drain", "--idle", str(IDLE)
        )
        for i in range(count)
    ]
    try:
        await eventually(  # every replica reports partitions assigned at once: the group settled
            lambda: asyncio.gather(*(proc.readiness() for proc in procs)), "every replica ready",
            timeout=60, until=lambda codes: codes == [200] * count,
            alive=lambda: all(proc.alive() for proc in procs),
            context=lambda: "\n".join(proc.tail() for proc in procs if not proc.alive()),
        )  # fmt: skip
        yield procs
    finally:
        for proc in procs:
            await proc.kill()


def handled_count(stderr: str) -> int:
    match = re.search(r"stopped after (\d+) records", stderr)
    assert match, stderr[-2000:]
    return int(match.group(1))


@pytest.mark.timeout(300)  # up to 60 s for readiness and 120 s for the drain, plus the scan
async def test_enqueue_shares_the_backfill_between_three_replicas(
    stack: StackEnv, s3_admin: Any, make_key: MakeKey, make_bucket: MakeBucket, tmp_path: Path
) -> None:
    cli = Cli(stack)
    ek = make_key("enqueue")
    bucket = make_bucket(notify=False)  # only the backfill events reach Kafka
    plain = [f"p/{i:02d} file+{i}" for i in range(36)]
    for key in plain:
        s3_admin.put_object(Bucket=bucket, Key=key, Body=b"plaintext")
    for i in range(6):
        s3_admin.put_object(Bucket=bucket, Key=f"ok/{i}", Body=b"k", ServerSideEncryption="aws:kms",
                            SSEKMSKeyId=ek)  # fmt: skip
    set_default_key(s3_admin, bucket, ek)
    await cli.start_at_end()

    async with replicas(cli, 3, tmp_path) as procs:
        scan = cli("scan", f"s3://{bucket}", "--enqueue", "--no-progress")
        assert scan.returncode == 0, scan.stderr
        summary = scan.json()
        assert summary["actions"] == {"enqueued": 36, "none": 6}
        assert summary["classified_from_listing"] == 42
        async with asyncio.timeout(120):
            codes = [await proc.process.wait() for proc in procs]
        outputs = [proc.log_text() for proc in procs]

    assert codes == [0, 0, 0], outputs
    handled = [handled_count(err) for err in outputs]
    assert all(n > 0 for n in handled), handled  # each replica took part
    audit = await cli.audit(bucket)
    backfilled = [r for r in audit if r["event_name"] == BACKFILL_EVENT_NAME]
    assert sorted(r["key"] for r in backfilled) == sorted(plain)
    assert {r["action"] for r in backfilled} == {"reencrypted"}
    assert sum(handled) >= len(plain)
    for key in plain + [f"ok/{i}" for i in range(6)]:
        head = s3_admin.head_object(Bucket=bucket, Key=key)
        assert head.get("SSEKMSKeyId") == f"arn:aws:kms:{ek}", key
    events = await _backfill_events(stack, cli.backfill_topic, bucket)
    assert len(events) == 36 and all(BACKFILL_EVENT_SOURCE in v for v in events)


async def _backfill_events(stack: StackEnv, topic: str, bucket: str) -> list[str]:
    """This bucket's records on the backfill topic (keyed ``bucket/key``)."""
    records = await read_raw(stack.kafka_bootstrap, topic)
    return [
        (r.value or b"").decode()
        for r in records
        if (r.key or b"").startswith(f"{bucket}/".encode())
    ]
