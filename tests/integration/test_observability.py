"""Operating the real service: ``/metrics`` and ``/readyz`` of a running ``enforcer run``, through
a KES outage; JSON log lines with trace ids; readiness of a member without partitions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cli_runner import Cli
from harness import EnforcerRun, write_policy
from replicas import Replica
from support import MakeBucket, MakeKey, Notifications, StackEnv, component_stopped
from waiting import eventually

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


@contextlib.asynccontextmanager
async def service(env: dict[str, str], log: Path) -> AsyncIterator[Replica]:
    """``enforcer run`` with JSON logs; stopped with SIGTERM, and it must exit 0."""
    running = await Replica.start({**env, "ENFORCER_LOG_FORMAT": "json"}, log, log_level="WARNING")
    try:
        yield running
    finally:
        code = await running.stop(timeout=40)
    assert code == 0, running.log_text()[-3000:]


def cli_env(run: EnforcerRun, **extra: str) -> dict[str, str]:
    return Cli(run.stack, run.policy_file, run.extra_env, run.tag).env(**extra)


@pytest.mark.stops_stack
async def test_metrics_move_during_a_run_and_readiness_flips_during_a_kes_outage(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
    tmp_path: Path,
) -> None:
    ek = make_key()
    bucket = make_bucket()
    run = EnforcerRun(stack, write_policy(tmp_path / "policy.yaml", {"bucket": bucket, "key": ek}))
    await run.start_at_end()
    env = cli_env(run, ENFORCER_RETRY__ATTEMPTS="2")
    done = {"action": "reencrypted", "mode": "enforce"}
    lag = {"topic": stack.notify_topic}

    async with service(env, tmp_path / "service.log") as svc:
        await svc.wait_ready()
        for i in range(3):
            s3_admin.put_object(Bucket=bucket, Key=f"before-{i}", Body=b"x")
        await eventually(
            lambda: svc.metric("enforcer_events_total", **done), "3 events", timeout=60,
            until=lambda n: n >= 3,
        )  # fmt: skip
        assert await svc.metric("enforcer_compliance_latency_seconds_count") >= 3
        assert await svc.metric("enforcer_step_duration_seconds_count", step="rewrite") >= 3
        assert await svc.metric("enforcer_key_available", key=ek) == 1
        assert await svc.metric("enforcer_paused") == 0
        # Every HEAD, GET and PUT so far went the lean way (nothing repeated through aiobotocore).
        assert await svc.metric("enforcer_s3_lean_fallbacks_total") == 0

        with component_stopped("kes"):  # MinIO cannot reach its KMS: rewrites fail
            for i in range(3):
                s3_admin.put_object(Bucket=bucket, Key=f"during-{i}", Body=b"y")

            async def paused() -> bool:  # the gauge follows within one turn of the consumer loop
                return await svc.readiness() == 503 and await svc.metric("enforcer_paused") == 1

            await eventually(paused, "/readyz 503 and enforcer_paused 1", timeout=60)
            assert "paused" in (await svc.readiness_reason())[1]
            assert await svc.metric("enforcer_errors_total", dependency="kms") > 0
            # MinIO's KMS errors answer the lean PUT as they would aiobotocore's: nothing resent.
            assert await svc.metric("enforcer_s3_lean_fallbacks_total") == 0
            await eventually(  # read from the broker every 5 s, also while paused
                lambda: svc.metric("enforcer_consumer_lag", **lag), "lag", timeout=30,
                until=lambda n: n >= 3,
            )  # fmt: skip
        await svc.wait_ready()  # again
        await eventually(
            lambda: svc.metric("enforcer_events_total", **done), "6 events", timeout=60,
            until=lambda n: n >= 6,
        )  # fmt: skip
        assert await svc.metric("enforcer_paused") == 0
        assert await svc.metric("enforcer_dlq_records_total") == 0
        await eventually(
            lambda: svc.metric("enforcer_consumer_lag", **lag), "lag 0", timeout=30,
            until=lambda n: n == 0,
        )  # fmt: skip
        body = await svc.metrics_text()

    kes_key = await asyncio.to_thread(Path(env["ENFORCER_KMS__CLIENT_KEY"]).read_text)
    secrets = [env["ENFORCER_S3__SECRET_ACCESS_KEY"], stack.admin_secret_key]
    secrets += [kes_key.strip().splitlines()[1]]
    assert not [s for s in secrets if s in body], "key material or a secret in /metrics"
    lines = [json.loads(line) for line in svc.log_lines() if line.strip()]  # one JSON object each
    pauses = [line for line in lines if "pausing consumption" in line["message"]]
    assert len(pauses) == 1 and TRACE_ID.match(pauses[0]["trace_id"]) and pauses[0]["span_id"]


async def test_dry_run_logs_one_json_line_per_object_with_its_trace(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
    tmp_path: Path,
) -> None:
    ek = make_key()
    bucket = make_bucket()
    cli = Cli(stack, write_policy(tmp_path / "policy.yaml", {"bucket": bucket, "key": ek}))
    await cli.start_at_end()
    for name in ("a", "b"):
        s3_admin.put_object(Bucket=bucket, Key=name, Body=b"x")
    await notifications(bucket, 2)

    result = await asyncio.to_thread(
        cli, "--log-level", "INFO", "run", "--dry-run", "--drain", "--idle", "1.5",
        ENFORCER_LOG_FORMAT="json",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    objects = [line for line in lines if line.get("bucket") == bucket]
    assert sorted((o["key"], o["verdict"], o["action"], o["level"]) for o in objects) == [
        ("a", "plaintext", "would_reencrypt", "INFO"),
        ("b", "plaintext", "would_reencrypt", "INFO"),
    ]
    audit = {r["key"]: r["trace_id"] for r in await cli.audit(bucket)}
    assert {o["key"]: o["trace_id"] for o in objects} == audit  # the log line leads to the trace


async def test_a_member_without_partitions_is_ready_and_idle(
    stack: StackEnv, tmp_path: Path
) -> None:
    topic = f"test-one-partition-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    # One partition in all: the backfill lane off (its topic is the input topic), or the second
    # member would take the backfill topic's partition.
    run = EnforcerRun(stack, extra_env={"ENFORCER_KAFKA__TOPICS": json.dumps([topic]),
                                        "ENFORCER_KAFKA__BACKFILL_TOPIC": topic})  # fmt: skip
    env = cli_env(run)

    async with (
        service(env, tmp_path / "first.log") as first,
        service(env, tmp_path / "second.log") as second,
    ):

        async def answers() -> list[tuple[int, str]]:
            both = [await first.readiness_reason(), await second.readiness_reason()]
            return sorted((code, reason.split(" ")[0]) for code, reason in both)

        # One consumes the partition, the other is idle: both ready.
        await eventually(
            answers, "one member consuming, one idle", timeout=60,
            until=lambda got: got == [(200, "consuming"), (200, "idle:")],
        )  # fmt: skip
