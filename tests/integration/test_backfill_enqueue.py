"""Distributed backfill on the real stack: ``enforcer scan --enqueue`` lists and publishes one
event per non-compliant object to the backfill topic; three ``enforcer run`` replicas of one
consumer group share the rewrites; every object ends compliant."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from cli_runner import ENFORCER, Cli
from harness import read_raw, set_default_key
from support import MakeBucket, MakeKey, StackEnv

from enforcer.core.events import BACKFILL_EVENT_NAME, BACKFILL_EVENT_SOURCE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def replicas(cli: Cli, count: int) -> Iterator[list[subprocess.Popen[str]]]:
    """``count`` ``enforcer run --drain`` processes of the run's group, each ready (partitions
    assigned, /readyz 200) before the block starts; killed if the block fails."""
    ports = [free_port() for _ in range(count)]
    procs = [
        subprocess.Popen(  # noqa: S603 - our own entry point
            [str(ENFORCER), "--log-level", "INFO", "run", "--drain", "--idle", "6"],
            env=cli.env(ENFORCER_HEALTH_PORT=str(port)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for port in ports
    ]
    try:
        wait_ready(ports, procs)
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def wait_ready(ports: list[int], procs: list[subprocess.Popen[str]], timeout: float = 60) -> None:
    """Every replica reports partitions assigned at once (the group has settled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"a replica exited early: {proc.communicate()[1][-3000:]}")
        codes = []
        for port in ports:
            try:
                codes.append(httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code)
            except httpx.HTTPError:
                codes.append(0)
        if codes == [200] * len(ports):
            return
        time.sleep(0.2)  # polling a probe: there is no event to wait on
    raise AssertionError(f"replicas not ready within {timeout}s: {codes}")


def handled_count(stderr: str) -> int:
    match = re.search(r"stopped after (\d+) records", stderr)
    assert match, stderr[-2000:]
    return int(match.group(1))


async def test_enqueue_shares_the_backfill_between_three_replicas(
    stack: StackEnv, s3_admin: Any, make_key: MakeKey, make_bucket: MakeBucket
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

    with replicas(cli, 3) as procs:
        scan = cli("scan", f"s3://{bucket}", "--enqueue", "--no-progress")
        assert scan.returncode == 0, scan.stderr
        summary = scan.json()
        assert summary["actions"] == {"enqueued": 36, "none": 6}
        assert summary["classified_from_listing"] == 42
        outputs = [proc.communicate(timeout=120)[1] for proc in procs]

    assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
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
