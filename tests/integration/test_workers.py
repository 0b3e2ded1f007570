"""``enforcer run --workers 2`` on the real stack: one supervisor, two consumer processes.

The two workers share one backlog in one consumer group (each handles some of it, nothing
twice); the supervisor's one health port answers for both (``/readyz`` ready when both are,
``/metrics`` labelled per worker); SIGTERM stops both cleanly (exit 0, offsets committed); a
worker that dies takes the pod down loudly (exit 1, the other worker stopped).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from harness import EnforcerRun, write_policy
from replicas import (
    Backlog,
    Replica,
    Spawn,
    assert_all_compliant,
    audit_tail,
    group_lag,
    metric_sum,
)
from support import MakeBucket, MakeKey, StackEnv
from waiting import eventually

pytestmark = pytest.mark.integration


def worker_pids(supervisor: Replica) -> list[int]:
    return [int(p) for p in re.findall(r"worker \d+ started \(pid (\d+)\)", supervisor.log_text())]


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(300)
async def test_two_workers_share_a_backlog_and_stop_together_on_sigterm(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    spawn: Spawn,
    tmp_path: Path,
) -> None:
    ek, bucket = make_key(), make_bucket()
    run = EnforcerRun(stack, write_policy(tmp_path / "policy.yaml", {"bucket": bucket, "key": ek}))
    await run.start_at_end()
    keys = [f"obj-{i:04}" for i in range(120)]
    async with audit_tail(run) as tail:
        supervisor = await spawn(run, "workers", ENFORCER_WORKERS="2", ENFORCER_CONCURRENCY="4")
        await supervisor.wait_ready(timeout=120)  # both joined the group: they share it
        status, reason = await supervisor.readiness_reason()
        assert status == 200 and "worker 0: consuming" in reason and "worker 1: consuming" in reason
        for key in keys:
            s3_admin.put_object(Bucket=bucket, Key=key, Body=key.encode() * 64)

        def follow_ups(records: list[dict[str, Any]]) -> bool:  # our rewrites' notifications
            own = {r["key"] for r in records if r.get("bucket") == bucket and r["action"] == "none"}
            return own >= set(keys)

        await tail.until(follow_ups, 180, "the backlog and its follow-ups", alive=supervisor.alive)
        text = await supervisor.metrics_text()
        done = {"verdict": "plaintext", "action": "reencrypted"}
        by_worker = [metric_sum(text, "enforcer_events_total", worker=w, **done)
                     for w in ("0", "1")]  # fmt: skip
        pids = worker_pids(supervisor)
        assert len(pids) == 2 and all(running(p) for p in pids)

        started = time.monotonic()
        assert await supervisor.stop(timeout=60) == 0
        assert not any(running(p) for p in pids), "a worker outlived the supervisor"
        print(f"\nSIGTERM → both workers stopped in {time.monotonic() - started:.1f}s")
    assert sum(by_worker) == len(keys), by_worker  # each object rewritten once, by one worker
    assert min(by_worker) > 0, f"one worker did all the work: {by_worker}"
    reencrypted = [r for r in tail.records if r.get("bucket") == bucket
                   and r["action"] == "reencrypted"]  # fmt: skip
    assert sorted(r["key"] for r in reencrypted) == sorted(keys)
    assert_all_compliant(s3_admin, bucket, keys, ek)
    assert await group_lag(run.stack.kafka_bootstrap, run.group_id, [run.stack.notify_topic]) == 0
    assert "worker 0" in supervisor.log_text() and "Traceback" not in supervisor.log_text()


@pytest.mark.timeout(300)
async def test_a_worker_that_dies_fails_the_pod_loudly(backlog: Backlog, spawn: Spawn) -> None:
    run, _, _, _ = await backlog(4)
    supervisor = await spawn(run, "workers", ENFORCER_WORKERS="2")
    await supervisor.wait_ready(timeout=120)
    victim, survivor = worker_pids(supervisor)
    os.kill(victim, signal.SIGKILL)
    code = await asyncio.wait_for(supervisor.process.wait(), timeout=60)
    assert code == 1
    assert re.search(rf"worker \d \(pid {victim}\) exited with code -9", supervisor.log_text())
    assert not running(survivor), "the other worker was left running"


@pytest.mark.timeout(300)
async def test_two_workers_drain_a_backlog_and_exit_0(
    backlog: Backlog, s3_admin: Any, spawn: Spawn
) -> None:
    run, ek, bucket, keys = await backlog(40)
    drain = await spawn(run, "drain", "--workers", "2", "--drain", "--idle", "2")
    code = await eventually(
        lambda: drain.process.returncode, "the drain to exit", timeout=240,
        until=lambda returned: returned is not None, context=drain.tail,
    )  # fmt: skip
    assert code == 0, drain.log_text()[-3000:]
    assert drain.log_text().count("worker ") >= 2
    assert_all_compliant(s3_admin, bucket, keys, ek)
