"""Credentials revoked at run time pause the enforcer (not ready, alert) instead of flooding the
DLQ; a genuinely per-object AccessDenied still dead-letters just that object. The same for the
KMS: the only key in use refused (nothing shows it is the key's own, not the storage's KMS
identity) pauses after the patience instead of dead-lettering, one refused key among working
ones is that key's objects' problem. (The local KES refuses MinIO the keys named
``refused-*``.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import EnforcerRun, write_policy
from replicas import (
    Backlog,
    ReadinessLog,
    Spawn,
    assert_all_compliant,
    assert_plaintext,
    audit_tail,
    handled_keys,
)
from support import MakeBucket, MakeKey, Notifications, StackEnv, minio_event, produce

ENFORCER_POLICY = "sse-enforcer"  # created by deploy/local/stack up


def mc(stack: StackEnv, config_dir: Path, *args: str) -> str:
    """``mc ARGS`` as the MinIO admin (the stack puts ``mc`` on PATH)."""
    endpoint = stack.s3_endpoint.removeprefix("http://")
    env = {
        **os.environ,
        "MC_HOST_local": f"http://{stack.admin_access_key}:{stack.admin_secret_key}@{endpoint}",
    }
    mc_bin = shutil.which("mc")
    assert mc_bin, "the stack's mc is not on PATH"
    proc = subprocess.run(  # noqa: S603 - the stack's own mc, fixed arguments
        [mc_bin, "--config-dir", str(config_dir), "--quiet", "--no-color", *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"mc {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


@pytest.fixture
def enforcer_user(stack: StackEnv, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A MinIO user of its own with the enforcer's policy: revoking it affects this test only."""
    user, secret = f"enf-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    config = tmp_path / "mc"
    mc(stack, config, "admin", "user", "add", "local", user, secret)
    mc(stack, config, "admin", "policy", "attach", "local", ENFORCER_POLICY, "--user", user)
    yield user, secret
    mc(stack, config, "admin", "user", "remove", "local", user)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("revoke", ["detach-policy", "disable-user"])
async def test_revoked_credentials_pause_and_alert_instead_of_dead_lettering(
    revoke: str,
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
    enforcer_user: tuple[str, str],
    tmp_path: Path,
    spawn: Spawn,
) -> None:
    user, secret = enforcer_user
    ek, bucket = make_key(), make_bucket()
    run = EnforcerRun(
        stack,
        policy_file=write_policy(tmp_path / "policy.yaml", {"bucket": bucket, "key": ek}),
        extra_env={"ENFORCER_S3__ACCESS_KEY_ID": user, "ENFORCER_S3__SECRET_ACCESS_KEY": secret},
    )
    await run.start_at_end()
    keys = [f"obj-{i:03}" for i in range(120)]
    for key in keys:
        s3_admin.put_object(Bucket=bucket, Key=key, Body=b"x" * 512)
    await notifications(bucket, len(keys), timeout=120)
    config = tmp_path / "mc"
    revoke_args, restore_args = {
        "detach-policy": (
            ("admin", "policy", "detach", "local", ENFORCER_POLICY, "--user", user),
            ("admin", "policy", "attach", "local", ENFORCER_POLICY, "--user", user),
        ),
        "disable-user": (
            ("admin", "user", "disable", "local", user),
            ("admin", "user", "enable", "local", user),
        ),
    }[revoke]

    async with audit_tail(run) as tail:
        replica = await spawn(run, "enforcer", ENFORCER_CONCURRENCY="1",
            ENFORCER_OUTAGE__PROBE_INTERVAL="0.5",
        )  # fmt: skip
        async with ReadinessLog(replica) as ready:
            await tail.until(
                lambda r: len(handled_keys(r, bucket)) >= 5, 120, "the backlog under way",
                alive=replica.alive,
            )  # fmt: skip
            mc(stack, config, *revoke_args)
            try:
                await ready.wait_for(503, timeout=60)
                paused_with = len(handled_keys(tail.records, bucket))
                assert await run.dead_letters() == []
            finally:
                mc(stack, config, *restore_args)
            await tail.until(
                lambda r: handled_keys(r, bucket) >= set(keys), 180, "every object handled",
                alive=replica.alive,
            )  # fmt: skip
            await ready.wait_for(200, timeout=60)
        assert await replica.stop() == 0, replica.tail()

    log = replica.log_lines()
    assert sum("credentials refused by storage" in line for line in log) >= 1, replica.tail()
    assert sum("pausing consumption" in line for line in log) == 1, replica.tail()
    assert await run.dead_letters() == []
    failed = [r for r in await run.audit(bucket) if r["action"] == "failed"]
    assert failed == []
    for key in keys:
        assert s3_admin.head_object(Bucket=bucket, Key=key)["SSEKMSKeyId"] == f"arn:aws:kms:{ek}"
    print(f"\n{revoke}: {len(keys)} objects, paused after {paused_with}, DLQ 0, failed 0")


@pytest.mark.timeout(180)
async def test_a_per_object_access_denied_still_dead_letters_that_object(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
    enforcer_user: tuple[str, str],
    tmp_path: Path,
) -> None:
    user, secret = enforcer_user
    ek, bucket = make_key(), make_bucket()
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/secret/*"],
            }
        ],
    }
    config, policy_name = tmp_path / "mc", f"deny-{uuid.uuid4().hex[:8]}"
    (tmp_path / "deny.json").write_text(json.dumps(deny), encoding="utf-8")
    mc(
        stack,
        config,
        "admin",
        "policy",
        "create",
        "local",
        policy_name,
        str(tmp_path / "deny.json"),
    )
    mc(stack, config, "admin", "policy", "attach", "local", policy_name, "--user", user)
    try:
        run = EnforcerRun(
            stack,
            policy_file=write_policy(tmp_path / "policy.yaml", {"bucket": bucket, "key": ek}),
            extra_env={
                "ENFORCER_S3__ACCESS_KEY_ID": user,
                "ENFORCER_S3__SECRET_ACCESS_KEY": secret,
            },
        )
        await run.start_at_end()
        keys = ["a", "secret/x", "b", "c"]
        for key in keys:
            s3_admin.put_object(Bucket=bucket, Key=key, Body=b"x")
        await notifications(bucket, len(keys))
        await run.drain()
    finally:
        mc(stack, config, "admin", "policy", "detach", "local", policy_name, "--user", user)
        mc(stack, config, "admin", "policy", "remove", "local", policy_name)

    [dlq] = await run.dead_letters()
    assert dlq["error_class"] == "access_denied" and "secret/x" in dlq["reason"]
    # The first record per key is its write's event (the enforcer's own rewrites come after).
    by_key = {r["key"]: r["action"] for r in reversed(await run.audit(bucket))}
    assert by_key == {"a": "reencrypted", "secret/x": "failed", "b": "reencrypted",
                      "c": "reencrypted"}  # fmt: skip


@pytest.mark.timeout(300)
async def test_a_kms_refusing_the_only_key_in_use_pauses_and_alerts_and_loses_nothing(
    backlog: Backlog, s3_admin: Any, make_key: MakeKey, spawn: Spawn
) -> None:
    run, _, bucket, keys = await backlog(20, key_prefix="refused")

    # No other event shows the KMS serving MinIO: the events are parked, and after their
    # patience, with still no evidence that the key alone is refused, it is our access.
    replica = await spawn(run, "enforcer", ENFORCER_OUTAGE__LOG_INTERVAL="2",
                          ENFORCER_KEYS__PARK_PATIENCE="5")  # fmt: skip
    async with ReadinessLog(replica) as ready:
        await replica.wait_for_log("pausing consumption", timeout=60)
        paused_at = time.monotonic()
        await replica.wait_for_log("still paused", timeout=60)  # trials keep failing, quietly
        alerts = await replica.metric("enforcer_credential_alerts_total", dependency="kms")
        still_paused_at = time.monotonic()
    assert await replica.stop() == 0, replica.tail()

    refused = [reason for reason in ready.reasons() if "credentials refused by kms" in reason]
    assert refused, ready.changes()
    assert 200 not in ready.between(paused_at, still_paused_at), ready.changes()
    assert alerts == 1
    log = replica.log_lines()
    assert sum("pausing consumption" in line for line in log) == 1, replica.tail()
    assert any("no other key used since" in line for line in log), replica.tail()
    assert not any("resuming consumption" in line for line in log), replica.tail()
    assert await run.dead_letters() == []
    assert await run.audit(bucket) == []  # no verdict yet: the events wait, uncommitted
    assert_plaintext(s3_admin, bucket, keys)

    # The operator points the bucket at a key MinIO may use: the same events, nothing lost.
    ek = make_key()
    assert run.policy_file is not None
    write_policy(run.policy_file, {"bucket": bucket, "key": ek})
    async with audit_tail(run) as tail:
        replica = await spawn(run, "after-the-fix")
        await tail.until(
            lambda r: handled_keys(r, bucket) >= set(keys), 120, "every object handled",
            alive=replica.alive,
        )  # fmt: skip
    assert await replica.stop() == 0, replica.tail()
    assert await run.dead_letters() == []
    assert_all_compliant(s3_admin, bucket, keys, ek)
    print(f"\nevery key refused: paused, DLQ 0; after the fix {len(keys)} objects compliant")


@pytest.mark.timeout(300)
async def test_one_refused_key_among_working_ones_dead_letters_only_its_objects(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    spawn: Spawn,
    tmp_path: Path,
) -> None:
    refused, ek = make_key("refused"), make_key()
    refused_bucket, bucket = make_bucket(notify=False), make_bucket(notify=False)
    policy = write_policy(
        tmp_path / "policy.yaml",
        {"bucket": refused_bucket, "key": refused},
        {"bucket": bucket, "key": ek},
    )
    topic = f"test-in-{uuid.uuid4().hex[:8]}"
    run = EnforcerRun(
        stack, policy_file=policy, extra_env={"ENFORCER_KAFKA__TOPICS": json.dumps([topic])}
    )
    objects = [(refused_bucket, f"r-{i}") for i in range(6)] + [
        (bucket, f"w-{i:02}") for i in range(20)
    ]
    for name, key in objects:
        s3_admin.put_object(Bucket=name, Key=key, Body=b"x" * 256)
    # One partition, the refused key's events first (more than the window of four records),
    # one slot, a pause after the first failure: nothing has shown the KMS working when they
    # fail. They are parked (out of the window, holding no slot), the working events behind
    # them are handled, which shows the refusal is the key's own: dead-lettered as such after
    # the patience, and nothing paused.
    events = [(f"{name}/{key}".encode(), minio_event(name, key)) for name, key in objects]
    await produce(stack.kafka_bootstrap, topic, events, partition=0)

    replica = await spawn(run, "enforcer", ENFORCER_CONCURRENCY="1",
                          ENFORCER_OUTAGE__FAILURES_BEFORE_PAUSE="1",
                          ENFORCER_KEYS__PARK_PATIENCE="10")  # fmt: skip
    refused_keys = [key for name, key in objects if name == refused_bucket]
    keys = [key for name, key in objects if name == bucket]
    async with audit_tail(run) as tail:
        await tail.until(lambda r: handled_keys(r, bucket) >= set(keys), 120,
                         "every working object", alive=replica.alive)  # fmt: skip
        assert handled_keys(tail.records, refused_bucket) == set()  # parked, not failed
        await tail.until(lambda r: handled_keys(r, refused_bucket) >= set(refused_keys), 120,
                         "the refused ones after the patience", alive=replica.alive)  # fmt: skip
        await replica.wait_ready(timeout=60)
        available = await replica.metric("enforcer_key_available", key=refused)
        alerts = await replica.metric(
            "enforcer_key_alerts_total", key=refused, error_type="not_authorized"
        )
    assert await replica.stop() == 0, replica.tail()

    log = replica.log_lines()
    assert not any("pausing consumption" in line for line in log), replica.tail()
    assert sum(f"key {refused} unusable" in line for line in log) == 1, replica.tail()
    assert (available, alerts) == (0, len(refused_keys))
    failed = await run.audit(refused_bucket)
    assert sorted(r["key"] for r in failed) == refused_keys
    assert {(r["action"], r["reason"].split(":")[0]) for r in failed} == {
        ("failed", "access_denied")
    }
    assert all("parked" in r["reason"] for r in failed)
    dead = await run.dead_letters()
    assert {d["event_id"] for d in dead} == {r["event_id"] for r in failed}
    assert {d["error_class"] for d in dead} == {"access_denied"}
    assert_plaintext(s3_admin, refused_bucket, refused_keys)
    assert_all_compliant(s3_admin, bucket, keys, ek)
