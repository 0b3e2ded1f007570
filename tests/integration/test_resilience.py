"""Failure model on the real stack: KMS outages pause, never DLQ; SIGTERM is clean."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from harness import EnforcerRun, enforcer_environment, write_policy
from replicas import audit_tail, with_action
from support import MakeBucket, MakeKey, Notifications, StackEnv, component_stopped
from waiting import eventually


@pytest.mark.stops_stack
async def test_kms_outage_pauses_consumption_and_resumes_without_dead_letters(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ek = make_key()
    bucket = make_bucket()
    run = EnforcerRun(
        stack, policy_file=write_policy(tmp_path / "policy.yaml", {"bucket": bucket, "key": ek})
    )
    await run.start_at_end()
    keys = [f"doc-{i}" for i in range(6)]
    caplog.set_level(logging.INFO, logger="enforcer")
    with component_stopped("kes"):
        for key in keys:  # plaintext writes need no KMS
            s3_admin.put_object(Bucket=bucket, Key=key, Body=key.encode())
        await notifications(bucket, len(keys))
        enforcer = asyncio.create_task(run.drain(idle=2.0))
        await eventually(
            lambda: "pausing consumption" in caplog.text, "the outage gate", timeout=60
        )
        await asyncio.sleep(3)  # well past the retry budget: nothing may fail meanwhile
        assert not enforcer.done()
        assert await run.dead_letters() == []
        assert await run.audit(bucket) == []
    await asyncio.wait_for(enforcer, timeout=120)

    records = await run.audit(bucket)
    first = {r["key"]: r for r in reversed(records)}
    assert {k: first[k]["action"] for k in keys} == dict.fromkeys(keys, "reencrypted")
    assert await run.dead_letters() == []
    for key in keys:
        assert s3_admin.head_object(Bucket=bucket, Key=key)["SSEKMSKeyId"] == f"arn:aws:kms:{ek}"
    # Two log lines for the whole outage, not one per event or per retry.
    assert caplog.text.count("pausing consumption") == 1
    assert caplog.text.count("resuming consumption") == 1


@pytest.mark.parametrize("kms_kind", ["kes", "none"])
async def test_missing_key_is_audited_dead_lettered_and_does_not_stall_other_buckets(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
    tmp_path: Path,
    kms_kind: str,
) -> None:
    good_key = make_key()
    bad_bucket, good_bucket = make_bucket(), make_bucket()
    policy = write_policy(
        tmp_path / "policy.yaml",
        {"bucket": bad_bucket, "key": f"never-created-{good_key}"},
        {"bucket": good_bucket, "key": good_key},
    )
    # With a KMS client the start reports the missing key and goes on (`enforcer policy check`
    # is what refuses it); without one only MinIO knows, per object, like a key deleted while
    # the service runs. Either way its objects are parked (the others enforced meanwhile) and
    # dead-lettered after the patience.
    run = EnforcerRun(stack, policy_file=policy, extra_env={
        "ENFORCER_KMS__KIND": kms_kind, "ENFORCER_KEYS__PARK_PATIENCE": "2",
    })  # fmt: skip
    await run.start_at_end()
    s3_admin.put_object(Bucket=bad_bucket, Key="x", Body=b"x")
    s3_admin.put_object(Bucket=good_bucket, Key="y", Body=b"y")
    await notifications(bad_bucket, 1)
    await notifications(good_bucket, 1)

    await run.drain()

    [failed] = await run.audit(bad_bucket)
    assert (failed["verdict"], failed["action"]) == ("plaintext", "failed")
    assert failed["reason"].startswith("key_missing") and "parked" in failed["reason"]
    [dlq] = await run.dead_letters()
    assert dlq["error_class"] == "key_missing" and dlq["event_id"] == failed["event_id"]
    assert (await run.audit(good_bucket))[0]["action"] == "reencrypted"


async def test_sigterm_stops_cleanly_and_nothing_is_lost(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
    tmp_path: Path,
) -> None:
    ek = make_key()
    bucket = make_bucket()
    run = EnforcerRun(
        stack, policy_file=write_policy(tmp_path / "policy.yaml", {"bucket": bucket, "key": ek})
    )
    await run.start_at_end()
    keys = [f"obj-{i:03}" for i in range(40)]
    for key in keys:
        s3_admin.put_object(Bucket=bucket, Key=key, Body=b"z" * 2048)
    await notifications(bucket, len(keys))
    env = {
        "ENFORCER_KAFKA__GROUP_ID": run.group_id,
        "ENFORCER_KAFKA__AUDIT_TOPIC": run.audit_topic,
        "ENFORCER_KAFKA__DLQ_TOPIC": run.dlq_topic,
        "ENFORCER_POLICY_FILE": str(run.policy_file),
        "ENFORCER_CONCURRENCY": "2",
        "ENFORCER_SHUTDOWN_TIMEOUT": "10",
    }
    with enforcer_environment(stack, **env):
        environment = dict(os.environ)
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("enforcer")), "run",
        env=environment, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with audit_tail(run) as tail:  # joined the group, busy with the backlog
        await tail.until(
            with_action(bucket, "reencrypted"), 60, "a rewrite",
            alive=lambda: process.returncode is None,
        )  # fmt: skip
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert time.monotonic() - started < 15  # within the shutdown bound (+ client close)

    await run.drain()  # the same group picks up exactly where the committed offsets say

    done = {r["key"] for r in await run.audit(bucket) if r["action"] in ("reencrypted", "none")}
    assert done >= set(keys)
    for key in keys:
        assert s3_admin.head_object(Bucket=bucket, Key=key)["SSEKMSKeyId"] == f"arn:aws:kms:{ek}"
    assert await run.dead_letters() == []
