"""What the Kafka adapters are told: plain options, built from the settings by the app."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class KafkaOptions:
    """The brokers, how to reach them (TLS, SASL), and the topics and group the enforcer uses.

    Checked for consistency by the settings they come from; secrets are plain strings here and
    never shown (``repr=False``).
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "sse-enforcer"
    topics: tuple[str, ...] = ("minio-events",)
    group_id: str = "sse-enforcer"
    audit_topic: str = "sse-enforcer.audit"
    dlq_topic: str = "sse-enforcer.dlq"
    backfill_topic: str = "sse-enforcer.backfill"
    backfill_max_live_lag: int = 100
    backfill_tasks_topic: str = "sse-enforcer.backfill-tasks"
    backfill_progress_topic: str = "sse-enforcer.backfill-progress"
    auto_offset_reset: str = "earliest"
    max_poll_records: int = 200
    max_poll_interval_ms: int = 300_000
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    sasl_aws_region: str | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: str | None = field(default=None, repr=False)
