"""Running the real enforcer against the local stack, deterministically (arq's ``burst`` idea).

Each run gets its own consumer group, started at the end of the notification topic when the
test begins, and its own audit, dead-letter and backfill topics; the enforcer runs in drain mode
(stop once caught up and idle), so a test writes objects, waits for MinIO's notifications to
reach Kafka, runs the enforcer, and reads exactly its own audit records.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from support import StackEnv, topic_ends

from enforcer.app import run_service
from enforcer.config import Settings, load_settings
from enforcer.core.policy import Mode


def set_default_key(s3: Any, bucket: str, key: str) -> None:
    """PutBucketEncryption with SSE-KMS under ``key``: what ``mc encrypt set sse-kms`` does."""
    rule = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule}]},
    )


def write_policy(path: Path, *rules: dict[str, str]) -> Path:
    """A policy file with ``rules`` (docs/contract.md)."""
    path.write_text(yaml.safe_dump({"rules": list(rules)}), encoding="utf-8")
    return path


@contextmanager
def enforcer_environment(stack: StackEnv, **extra: str) -> Iterator[None]:
    """The stack's ENFORCER_* variables (the least-privilege identities) plus ``extra``."""
    saved = dict(os.environ)
    os.environ.update(stack.enforcer_env)
    os.environ.update(extra)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass(frozen=True)
class RawRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


async def read_raw(bootstrap: str, topic: str, idle_ms: int = 1500) -> list[RawRecord]:
    """Every record on ``topic`` as bytes, from the beginning until idle."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[RawRecord] = []
    try:
        while batch := await consumer.getmany(timeout_ms=idle_ms):
            for messages in batch.values():
                records += [
                    RawRecord(m.partition, m.offset, m.key, m.value, dict(m.headers or ()))
                    for m in messages
                ]
    finally:
        await consumer.stop()
    return sorted(records, key=lambda r: (r.partition, r.offset))


async def read_topic(
    bootstrap: str, topic: str, idle_ms: int = 1500
) -> list[tuple[bytes | None, dict[str, Any]]]:
    """Every record on ``topic`` (key, JSON value), read from the beginning until idle."""
    return [
        (r.key, json.loads(r.value or b"null")) for r in await read_raw(bootstrap, topic, idle_ms)
    ]


async def commit_group_at_end(bootstrap: str, topic: str, group_id: str) -> dict[int, int]:
    """Give ``group_id`` committed offsets at the current end of ``topic``; return them.

    A group that has none starts from the earliest retained event; this lets a test skip the
    history the shared notification topic holds.
    """
    ends = await topic_ends(bootstrap, topic)
    committer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await committer.start()
    try:
        offsets = {TopicPartition(topic, p): offset for p, offset in ends.items()}
        committer.assign(list(offsets))
        await committer.commit(offsets)
    finally:
        await committer.stop()
    return ends


@dataclass
class EnforcerRun:
    """One configured enforcer: call :meth:`drain` after the notifications are in Kafka."""

    stack: StackEnv
    policy_file: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def group_id(self) -> str:
        return f"test-{self.tag}"

    @property
    def audit_topic(self) -> str:
        return f"test-audit-{self.tag}"

    @property
    def dlq_topic(self) -> str:
        return f"test-dlq-{self.tag}"

    @property
    def backfill_topic(self) -> str:
        return f"test-backfill-{self.tag}"

    def overrides(self) -> dict[str, str]:
        """This run's ENFORCER_* settings on top of the stack's: its own group and topics."""
        env = {
            "ENFORCER_KAFKA__GROUP_ID": self.group_id,
            "ENFORCER_KAFKA__AUDIT_TOPIC": self.audit_topic,
            "ENFORCER_KAFKA__DLQ_TOPIC": self.dlq_topic,
            "ENFORCER_KAFKA__BACKFILL_TOPIC": self.backfill_topic,
            "ENFORCER_BUCKET_DEFAULT_TTL": "0",
            "ENFORCER_OUTAGE__PROBE_INTERVAL": "0.5",
            "ENFORCER_BACKFILL_RANGES": "0",  # range tasks: only the tests that publish them
            **self.extra_env,
        }
        if self.policy_file is not None:
            env["ENFORCER_POLICY_FILE"] = str(self.policy_file)
        return env

    def settings(self) -> Settings:
        with enforcer_environment(self.stack, **self.overrides()):
            return load_settings()

    async def start_at_end(self) -> None:
        await commit_group_at_end(
            self.stack.kafka_bootstrap, self.stack.notify_topic, self.group_id
        )

    async def drain(self, mode: Mode = Mode.ENFORCE, idle: float = 1.5) -> int:
        return await run_service(self.settings(), mode, drain_idle=idle)

    async def audit(self, bucket: str | None = None, intents: bool = False) -> list[dict[str, Any]]:
        """This run's audit records; without the intent (``rewriting``) records unless asked."""
        records = await read_topic(self.stack.kafka_bootstrap, self.audit_topic)
        return [
            v
            for _, v in records
            if (bucket is None or v["bucket"] == bucket) and (intents or v["action"] != "rewriting")
        ]

    async def dead_letters(self) -> list[dict[str, Any]]:
        return [v for _, v in await read_topic(self.stack.kafka_bootstrap, self.dlq_topic)]


# ---------------------------------------------------------------- the secured listeners


def sasl_ssl(stack: StackEnv, password: str | None = None) -> dict[str, str]:
    return {
        "ENFORCER_KAFKA__BOOTSTRAP_SERVERS": stack.kafka_sasl_bootstrap,
        "ENFORCER_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "ENFORCER_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "ENFORCER_KAFKA__SASL_USERNAME": stack.kafka_scram_user,
        "ENFORCER_KAFKA__SASL_PASSWORD": password or stack.kafka_scram_password,
        "ENFORCER_KAFKA__SSL_CAFILE": stack.kafka_ca,
    }


def mtls(stack: StackEnv, ca: str | None = None) -> dict[str, str]:
    return {
        "ENFORCER_KAFKA__BOOTSTRAP_SERVERS": stack.kafka_ssl_bootstrap,
        "ENFORCER_KAFKA__SECURITY_PROTOCOL": "SSL",
        "ENFORCER_KAFKA__SSL_CAFILE": ca or stack.kafka_ca,
        "ENFORCER_KAFKA__SSL_CERTFILE": stack.kafka_client_cert,
        "ENFORCER_KAFKA__SSL_KEYFILE": stack.kafka_client_key,
    }
