"""The enforcer over the stack's secured Kafka listeners: SASL_SSL with a SCRAM-SHA-512 user and
SSL with a client certificate (mTLS). MinIO itself publishes its notifications over SASL_SSL.

End to end, every client the service opens (event consumer, audit and DLQ producers) goes through
the secured listener, and the audit records are read back through it too; a wrong password, a CA
that did not sign the broker's certificate or a missing client certificate stops ``enforcer run``
at start with exit 2 and one line.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli_runner import ENFORCER, Cli
from harness import EnforcerRun, mtls, sasl_ssl, set_default_key
from support import MakeBucket, MakeKey, Notifications, StackEnv

from enforcer.config import KafkaSettings
from enforcer.kafka.clients import open_consumer


async def read_secured(settings: KafkaSettings, topic: str) -> list[dict[str, Any]]:
    """Every JSON record on ``topic``, read through the secured listener ``settings`` name."""
    records: list[dict[str, Any]] = []
    async with open_consumer(
        settings.options(), None, "test-reader", topics=[topic], auto_offset_reset="earliest"
    ) as consumer:
        while batch := await consumer.getmany(timeout_ms=1500):
            for messages in batch.values():
                records += [json.loads(m.value) for m in messages]
    return records


@pytest.mark.parametrize("listener", ["sasl_ssl", "mtls"])
async def test_enforces_end_to_end_over_a_secured_listener(
    listener: str,
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
) -> None:
    security = sasl_ssl(stack) if listener == "sasl_ssl" else mtls(stack)
    run = EnforcerRun(stack, extra_env=security)
    await run.start_at_end()
    ek = make_key("secured")
    bucket = make_bucket()
    s3_admin.put_object(Bucket=bucket, Key="plain", Body=b"p" * 2000)
    set_default_key(s3_admin, bucket, ek)
    await notifications(bucket, 1)

    await run.drain()
    await notifications(bucket, 2)  # MinIO announced the enforcer's own rewrite
    await run.drain()

    settings = run.settings().kafka
    assert settings.security_protocol == ("SASL_SSL" if listener == "sasl_ssl" else "SSL")
    records = [r for r in await read_secured(settings, run.audit_topic) if r["bucket"] == bucket]
    assert [(r["verdict"], r["action"]) for r in records] == [
        ("plaintext", "rewriting"),  # the intent, acknowledged before the write
        ("plaintext", "reencrypted"),
        ("compliant", "none"),
    ]
    head = s3_admin.head_object(Bucket=bucket, Key="plain")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", f"arn:aws:kms:{ek}")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong-password", "refused SASL SCRAM-SHA-512 authentication"),
        ("untrusted-ca", "is not trusted"),
        ("no-client-certificate", "ENFORCER_KAFKA__SSL_CERTFILE"),
    ],
)
def test_a_broker_refusing_us_stops_the_service_at_start(
    case: str, expected: str, stack: StackEnv
) -> None:
    security = {
        "wrong-password": lambda: sasl_ssl(stack, password="not-the-password"),
        "untrusted-ca": lambda: mtls(stack, ca=stack.kes_ca),  # a CA that did not sign Kafka's
        "no-client-certificate": lambda: {
            **mtls(stack),
            "ENFORCER_KAFKA__SSL_CERTFILE": "",
            "ENFORCER_KAFKA__SSL_KEYFILE": "",
        },
    }[case]()
    security = {k: v for k, v in security.items() if v}
    cli = Cli(stack)
    env = {k: v for k, v in cli.env(**security).items() if k not in _dropped(security)}
    result = _run_enforcer(env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("enforcer: configuration error: ")
    assert expected in lines[0]
    assert stack.kafka_scram_password not in result.stderr


def _dropped(security: dict[str, str]) -> set[str]:
    names = {"ENFORCER_KAFKA__SSL_CERTFILE", "ENFORCER_KAFKA__SSL_KEYFILE"}
    return names - security.keys()


def _run_enforcer(env: dict[str, str]) -> Any:
    return subprocess.run(  # noqa: S603 - our own entry point
        [str(ENFORCER), "--log-level", "WARNING", "run", "--drain", "--idle", "1"],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        check=False,
    )


@pytest.mark.parametrize("listener", ["sasl_ssl", "mtls"])
def test_the_operations_commands_use_the_secured_listener(
    listener: str, stack: StackEnv, make_bucket: MakeBucket, s3_admin: Any
) -> None:
    security = sasl_ssl(stack) if listener == "sasl_ssl" else mtls(stack)
    cli = Cli(stack, extra_env=security)
    bucket = make_bucket(notify=False)
    s3_admin.put_object(Bucket=bucket, Key="plain", Body=b"p")

    replay = cli("dlq", "replay", "--dry-run")
    assert replay.returncode == 0, replay.stderr
    assert replay.json()["would_replay"] == 0
    scan = cli("scan", f"s3://{bucket}", "--dry-run")
    assert scan.returncode == 0, scan.stderr
    assert scan.json()["verdicts"] == {"out_of_scope": 1}
    status = cli("status", "--json")
    assert status.returncode == 0, status.stderr
    assert status.json()["group"] == cli.group_id


def test_minio_publishes_its_notifications_over_sasl_ssl(stack: StackEnv, tmp_path: Path) -> None:
    """MinIO's Kafka target is the SASL_SSL listener (the notifications the other tests read
    arrive through it); the values come from MinIO's own view of its configuration."""
    host = stack.s3_endpoint.removeprefix("http://")
    env = {
        **os.environ,
        "MC_HOST_local": f"http://{stack.admin_access_key}:{stack.admin_secret_key}@{host}",
    }
    command = [
        "mc",
        "--config-dir",
        str(tmp_path),
        "admin",
        "config",
        "get",
        "local",
        "notify_kafka",
    ]
    shown = subprocess.run(  # noqa: S603 - the stack's own mc, fixed arguments
        command, capture_output=True, text=True, env=env, timeout=30, check=False
    )
    assert shown.returncode == 0, shown.stderr
    settings: dict[str, str] = {}
    for line in shown.stdout.splitlines():
        name, _, value = line.removeprefix("# ").partition("=")
        if name.startswith("MINIO_NOTIFY_KAFKA_") and not name.endswith("PASSWORD"):
            settings.setdefault(name.removeprefix("MINIO_NOTIFY_KAFKA_"), value)
    assert settings["BROKERS"] == stack.kafka_sasl_bootstrap
    assert (settings["TLS"], settings["SASL"], settings["SASL_MECHANISM"]) == ("on", "on", "sha512")
    assert settings.get("TLS_SKIP_VERIFY", "off") == "off"
