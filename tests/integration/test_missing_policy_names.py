"""Start with what exists: one of two policy buckets is deleted (objects, then the bucket) while
the service is stopped. The restarted service starts (no exit, no crash loop), reports the bucket
once (a log line, ``enforcer_policy_bucket_missing``), enforces the other bucket and audits the
deleted one's events as ``gone`` as they come."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_runner import Cli
from harness import EnforcerRun, write_policy
from replicas import Spawn, assert_all_compliant, audit_tail, handled_keys
from support import MakeBucket, MakeKey, Notifications, StackEnv


def delete_bucket(s3: Any, bucket: str) -> None:
    """What a tenant does: every object, then the bucket."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=entry["Key"])
    s3.delete_bucket(Bucket=bucket)


@pytest.mark.timeout(300)
async def test_a_policy_bucket_deleted_while_stopped_does_not_stop_the_others(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
    spawn: Spawn,
    tmp_path: Path,
) -> None:
    ek, kept, deleted = make_key(), make_bucket(), make_bucket()
    policy = write_policy(
        tmp_path / "policy.yaml", {"bucket": kept, "key": ek}, {"bucket": deleted, "key": ek}
    )
    run = EnforcerRun(stack, policy_file=policy)
    await run.start_at_end()
    before = [f"before-{i}" for i in range(3)]
    meanwhile = [f"meanwhile-{i:02}" for i in range(10)]
    async with audit_tail(run) as tail:
        first = await spawn(run, "first")
        await first.wait_ready()
        for bucket in (kept, deleted):
            for key in before:
                s3_admin.put_object(Bucket=bucket, Key=key, Body=key.encode())
        await tail.until(
            lambda r: handled_keys(r, kept) >= set(before)
            and handled_keys(r, deleted) >= set(before),
            120, "the first objects of both buckets", alive=first.alive,
        )  # fmt: skip
        assert await first.stop() == 0, first.tail()

        # While the service is stopped: new objects in both, then one tenant deletes theirs.
        for bucket in (kept, deleted):
            for key in meanwhile:
                s3_admin.put_object(Bucket=bucket, Key=key, Body=key.encode())
            await notifications(bucket, len(before) + len(meanwhile), timeout=60)
        delete_bucket(s3_admin, deleted)

        second = await spawn(run, "second")
        await second.wait_ready()  # it starts: no exit 2, consuming
        await tail.until(
            lambda r: handled_keys(r, kept) >= set(before + meanwhile)
            and handled_keys(r, deleted) >= set(before + meanwhile),
            120, "every event of both buckets", alive=second.alive,
        )  # fmt: skip
        assert await second.readiness() == 200 and second.alive()
        assert await second.metric("enforcer_policy_bucket_missing", bucket=deleted) == 1
        assert await second.metric("enforcer_policy_bucket_missing", bucket=kept) == 0
        assert await second.stop() == 0, second.tail()

    reports = [line for line in second.log_lines() if f"policy bucket '{deleted}'" in line]
    assert len(reports) == 1 and '"level": "ERROR"' in reports[0], reports
    assert_all_compliant(s3_admin, kept, before + meanwhile, ek)
    latest = {r["key"]: r for r in tail.records if r["bucket"] == deleted}  # the last per key
    assert {latest[k]["verdict"] for k in meanwhile} == {"gone"}
    assert {latest[k]["action"] for k in meanwhile} == {"skipped"}
    assert await run.dead_letters() == []
    # The strict form for CI refuses this policy, naming the bucket.
    check = Cli(stack, policy_file=policy)("policy", "check")
    assert check.returncode == 2 and f"bucket {deleted!r}" in check.stderr, check.stderr
