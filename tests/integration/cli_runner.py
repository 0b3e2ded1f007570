"""Running the real ``enforcer`` console command against the local stack, as a subprocess.

Exit codes and stdout are what a runbook or a probe sees, so the operations commands are tested
through the installed entry point (``.venv/bin/enforcer``), with the stack's ``ENFORCER_*``
settings plus per-test topics, and never in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from support import StackEnv

ENFORCER = Path(sys.executable).with_name("enforcer")


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Cli:
    """``enforcer`` with the stack's settings, its own consumer group and audit/DLQ topics."""

    stack: StackEnv
    extra_env: dict[str, str] = field(default_factory=dict)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def group_id(self) -> str:
        return f"test-ops-{self.tag}"

    @property
    def audit_topic(self) -> str:
        return f"test-ops-audit-{self.tag}"

    @property
    def dlq_topic(self) -> str:
        return f"test-ops-dlq-{self.tag}"

    def env(self, **overrides: str) -> dict[str, str]:
        return {
            **os.environ,
            **self.stack.enforcer_env,
            "ENFORCER_KAFKA__GROUP_ID": self.group_id,
            "ENFORCER_KAFKA__AUDIT_TOPIC": self.audit_topic,
            "ENFORCER_KAFKA__DLQ_TOPIC": self.dlq_topic,
            "ENFORCER_BUCKET_DEFAULT_TTL": "0",
            "ENFORCER_KMS_PROBE_INTERVAL": "0.5",
            **self.extra_env,
            **overrides,
        }

    def __call__(self, *args: str, timeout: float = 90.0, **overrides: str) -> CliResult:
        proc = subprocess.run(  # noqa: S603 - our own entry point, fixed arguments
            [str(ENFORCER), "--log-level", "WARNING", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(**overrides),
            check=False,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)


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
