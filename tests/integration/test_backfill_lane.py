"""The backfill lane on the real stack: ``enforcer scan --enqueue`` events wait on their own
topic while live notifications come first, keep per-object order with them (the user's write
wins), yield exactly one final record per object, and resume after a restart."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from cli_runner import Cli
from harness import write_policy
from replicas import Spawn, assert_all_compliant, audit_tail, handled_keys
from support import MakeBucket, MakeKey, StackEnv, minio_event, produce

from enforcer.core.events import BACKFILL_EVENT_NAME


def put_plaintext(s3: Any, bucket: str, keys: list[str]) -> None:
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())


def enqueue(cli: Cli, bucket: str, expected: int) -> None:
    scan = cli("scan", f"s3://{bucket}", "--enqueue", "--no-progress", timeout=300)
    assert scan.returncode == 0, scan.stderr
    assert scan.json()["actions"] == {"enqueued": expected}


def backfill_finals(records: list[dict[str, Any]], bucket: str) -> list[dict[str, Any]]:
    """The final records (not intents) of ``bucket``'s backfill events."""
    return [r for r in records if r["bucket"] == bucket and r["event_name"] == BACKFILL_EVENT_NAME
            and r["action"] != "rewriting"]  # fmt: skip


@pytest.mark.timeout(600)
async def test_new_writes_are_enforced_before_a_queued_backfill_and_win_over_it(
    stack: StackEnv, s3_admin: Any, make_key: MakeKey, make_bucket: MakeBucket, spawn: Spawn,
    tmp_path: Path,
) -> None:  # fmt: skip
    ek, backfilled, live = make_key(), make_bucket(), make_bucket()
    policy = write_policy(tmp_path / "policy.yaml", {"bucket": backfilled, "key": ek},
                          {"bucket": live, "key": ek})  # fmt: skip
    cli = Cli(stack, policy_file=policy, extra_env={"ENFORCER_CONCURRENCY": "2"})
    old = [f"old/{i:04}" for i in range(1500)]
    put_plaintext(s3_admin, backfilled, old)
    await cli.start_at_end()  # the puts above are history: only the backfill covers them
    enqueue(cli, backfilled, len(old))

    async with audit_tail(cli) as tail:
        replica = await spawn(cli, "enforcer")
        await tail.until(lambda r: len(backfill_finals(r, backfilled)) >= 50, 180,
                         "the backfill under way", alive=replica.alive)  # fmt: skip
        new = [f"new/{i:02}" for i in range(20)]
        put_plaintext(s3_admin, live, new)
        # A user overwrites objects whose backfill events are still queued: their write wins.
        overwritten = old[-10:]
        for key in overwritten:
            s3_admin.put_object(Bucket=backfilled, Key=key, Body=b"the user's newer content")
        await tail.until(lambda r: handled_keys(r, live) >= set(new), 120,
                         "every new write", alive=replica.alive)  # fmt: skip
        backfilled_by_then = len(backfill_finals(tail.records, backfilled))
        await tail.until(lambda r: len(backfill_finals(r, backfilled)) >= len(old), 420,
                         "the whole backfill", alive=replica.alive)  # fmt: skip
        assert await replica.stop() == 0, replica.tail()

    # Live first: the new writes did not wait for the 1,500 backfill events queued before them.
    assert backfilled_by_then < len(old) - 200, backfilled_by_then
    assert_all_compliant(s3_admin, live, new, ek)
    assert_all_compliant(s3_admin, backfilled, old, ek)
    for key in overwritten:
        body = s3_admin.get_object(Bucket=backfilled, Key=key)["Body"].read()
        assert body == b"the user's newer content", key
    finals = backfill_finals(tail.records, backfilled)
    assert sorted(r["key"] for r in finals) == old  # exactly one final record per object


@pytest.mark.timeout(300)
async def test_the_backfill_waits_while_the_live_lag_is_above_its_threshold(
    stack: StackEnv, s3_admin: Any, make_key: MakeKey, make_bucket: MakeBucket, tmp_path: Path
) -> None:
    ek = make_key()
    live, backfilled = make_bucket(notify=False), make_bucket(notify=False)
    policy = write_policy(tmp_path / "policy.yaml", {"bucket": backfilled, "key": ek},
                          {"bucket": live, "key": ek})  # fmt: skip
    topic = f"lane-live-{uuid.uuid4().hex[:10]}"  # a private live topic: no other test's events
    cli = Cli(stack, policy_file=policy, extra_env={
        "ENFORCER_KAFKA__TOPICS": json.dumps([topic]),
        "ENFORCER_KAFKA__BACKFILL_MAX_LIVE_LAG": "10",
        "ENFORCER_CONCURRENCY": "2",
    })  # fmt: skip
    live_keys = [f"live/{i:03}" for i in range(150)]
    backfill_keys = [f"backfill/{i:03}" for i in range(100)]
    put_plaintext(s3_admin, live, live_keys)
    put_plaintext(s3_admin, backfilled, backfill_keys)
    await produce(stack.kafka_bootstrap, topic,
                  [(f"{live}/{k}".encode(), minio_event(live, k)) for k in live_keys])  # fmt: skip
    enqueue(cli, backfilled, len(backfill_keys))

    await cli.drain(idle=3)

    records = sorted(await cli.audit(), key=lambda r: r["timestamp"])
    first = next(i for i, r in enumerate(records) if r["bucket"] == backfilled)
    live_before = sum(1 for r in records[:first] if r["bucket"] == live)
    window = 4 * 2
    # The lane opened only once at most 10 live records were unfetched and a window in flight.
    assert live_before >= len(live_keys) - 10 - window, live_before
    assert sorted(r["key"] for r in backfill_finals(records, backfilled)) == backfill_keys
    assert_all_compliant(s3_admin, backfilled, backfill_keys, ek)


@pytest.mark.timeout(600)
async def test_a_backfill_resumes_after_a_restart_with_one_final_record_per_object(
    stack: StackEnv, s3_admin: Any, make_key: MakeKey, make_bucket: MakeBucket, spawn: Spawn,
    tmp_path: Path,
) -> None:  # fmt: skip
    ek, bucket = make_key(), make_bucket(notify=False)
    policy = write_policy(tmp_path / "policy.yaml", {"bucket": bucket, "key": ek})
    cli = Cli(stack, policy_file=policy, extra_env={"ENFORCER_CONCURRENCY": "2"})
    keys = [f"obj/{i:03}" for i in range(300)]
    put_plaintext(s3_admin, bucket, keys)
    await cli.start_at_end()
    enqueue(cli, bucket, len(keys))

    async with audit_tail(cli) as tail:
        first = await spawn(cli, "first")
        await tail.until(lambda r: len(backfill_finals(r, bucket)) >= 60, 180,
                         "a fifth of the backfill", alive=first.alive)  # fmt: skip
        assert await first.stop() == 0, first.tail()
        done_before = len(backfill_finals(tail.records, bucket))
        second = await spawn(cli, "second")
        await tail.until(lambda r: len(backfill_finals(r, bucket)) >= len(keys), 300,
                         "the rest of the backfill", alive=second.alive)  # fmt: skip
        assert await second.stop() == 0, second.tail()

    assert done_before < len(keys)  # the restart happened mid-backfill
    finals = backfill_finals(tail.records, bucket)
    assert sorted(r["key"] for r in finals) == keys  # nothing twice, nothing skipped
    assert_all_compliant(s3_admin, bucket, keys, ek)
