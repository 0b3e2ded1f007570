"""Configuration (a contract: docs/contract.md lists the variables).

Environment variables with prefix ``ENFORCER_`` and nested delimiter ``__`` override an optional
YAML config file (``--config``), which overrides the defaults. A bad value fails at start with
:class:`ConfigError` naming the field and its environment variable, in one line.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from enforcer.core.policy import Mode
from enforcer.errors import ConfigError, describe_validation
from enforcer.kafka.options import KafkaOptions
from enforcer.storage.options import S3Options, is_aws_endpoint

GiB = 1024**3
MiB = 1024**2


def http_url(value: str | None) -> str | None:
    """An ``http(s)://host[:port]`` URL, checked at start rather than on the first request."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"bad port in {value!r}: {exc}") from None
    return value


HttpUrl = Annotated[str, AfterValidator(http_url)]


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    topics: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["minio-events"],
        min_length=1,
        description="A list; from the environment a JSON list or comma-separated names",
    )
    group_id: str = "sse-enforcer"
    audit_topic: str = "sse-enforcer.audit"
    dlq_topic: str = "sse-enforcer.dlq"
    backfill_tasks_topic: str = Field(
        default="sse-enforcer.backfill-tasks",
        min_length=1,
        description="Key ranges of `enforcer scan --split N --enqueue`, one task each, taken by "
        "the `enforcer run` replicas; created at start if missing",
    )
    backfill_progress_topic: str = Field(
        default="sse-enforcer.backfill-progress",
        min_length=1,
        description="Each range's progress, committed with its final audit records (compacted, "
        "keyed by range); created at start if missing",
    )
    client_id: str = "sse-enforcer"
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest",
        description="Where a group with no committed offset starts; the start is committed "
        "at once for every assigned partition, so latest means from the group's first start",
    )
    max_poll_records: int = Field(default=200, ge=1)
    max_poll_interval_ms: int = Field(
        default=300_000,
        ge=1000,
        description="A member that does not poll for this long leaves its group; it is also "
        "how long a rebalance waits for the members (Kafka's max.poll.interval.ms)",
    )
    backfill_topic: str = Field(
        default="sse-enforcer.backfill",
        min_length=1,
        description="Where `enforcer scan --enqueue` publishes backfill events; `enforcer run` "
        "consumes it with spare capacity only. Created at start if missing",
    )
    backfill_max_live_lag: int = Field(
        default=100,
        ge=0,
        description="The backfill topic is paused while more live notifications than this wait "
        "on this member's partitions",
    )
    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL (TLS, mTLS), SASL_PLAINTEXT or SASL_SSL"
    )
    sasl_mechanism: SaslMechanism | None = Field(
        default=None, description="Required with SASL_*; OAUTHBEARER means Amazon MSK IAM"
    )
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_aws_region: str | None = Field(
        default=None, description="OAUTHBEARER (MSK IAM): the cluster's AWS region"
    )
    ssl_cafile: Path | None = Field(
        default=None, description="PEM CA bundle the brokers' certificates chain to"
    )
    ssl_certfile: Path | None = Field(default=None, description="PEM client certificate (mTLS)")
    ssl_keyfile: Path | None = Field(default=None, description="PEM client key (mTLS)")
    ssl_key_password: SecretStr | None = Field(default=None, description="If the key is encrypted")

    @field_validator("topics", mode="before")
    @classmethod
    def _topics_from_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)  # a JSONDecodeError is a ValueError: reported as invalid
        return [name.strip() for name in text.split(",") if name.strip()]

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaSettings:
        problem = kafka_security_problem(self)
        if problem:
            raise ValueError(problem)
        return self

    def options(self) -> KafkaOptions:
        """What the Kafka adapters are given: these fields, secrets unwrapped."""
        values = {f.name: getattr(self, f.name) for f in fields(KafkaOptions)}
        values["topics"] = tuple(self.topics)
        for name in ("sasl_password", "ssl_key_password"):
            values[name] = reveal(values[name])
        return KafkaOptions(**values)


def kafka_security_problem(kafka: KafkaSettings) -> str | None:
    """The first inconsistency in ``kafka``'s security settings, named by its variable."""
    return _sasl_problem(kafka) or _tls_problem(kafka)


def _sasl_problem(kafka: KafkaSettings) -> str | None:
    protocol, mechanism = kafka.security_protocol, kafka.sasl_mechanism
    sasl = protocol.startswith("SASL_")
    if sasl and mechanism is None:
        return f"{_var('sasl_mechanism')} is required with security_protocol {protocol}"
    if not sasl and mechanism is not None:
        return f"{_var('sasl_mechanism')} needs security_protocol SASL_SSL or SASL_PLAINTEXT"
    if mechanism in {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}:
        missing = [n for n in ("sasl_username", "sasl_password") if not getattr(kafka, n)]
        if missing:
            return f"{_var(missing[0])} is required with sasl_mechanism {mechanism}"
    if mechanism == "OAUTHBEARER" and not kafka.sasl_aws_region:
        return f"{_var('sasl_aws_region')} is required with sasl_mechanism OAUTHBEARER (MSK IAM)"
    return None


def _tls_problem(kafka: KafkaSettings) -> str | None:
    files = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
    protocol = kafka.security_protocol
    if not protocol.endswith("SSL") and any(
        getattr(kafka, n) for n in (*files, "ssl_key_password")
    ):
        return f"{_var('security_protocol')} {protocol} does not use TLS: drop the ssl_* settings"
    if kafka.ssl_keyfile and not kafka.ssl_certfile:
        return f"{_var('ssl_certfile')} is required with ssl_keyfile"
    for name in files:
        path: Path | None = getattr(kafka, name)
        if path is not None and not path.is_file():
            return f"{_var(name)}: no such file {path}"
    return None


def reveal(value: SecretStr | None) -> str | None:
    """A secret's value, for the one adapter that needs it (never for a log line)."""
    return value.get_secret_value() if value is not None else None


def _var(field: str) -> str:
    return f"ENFORCER_KAFKA__{field.upper()}"


class S3Settings(_Section):
    endpoint_url: HttpUrl | None = None
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    ca_bundle: FilePath | None = Field(default=None, description="CA file for an https endpoint")
    multipart_threshold: int = Field(default=5 * GiB, ge=5 * MiB, description="Bytes")
    part_size: int = Field(default=64 * MiB, ge=5 * MiB, description="Bytes")
    max_pool_connections: int = Field(default=32, ge=1)
    lean_requests: bool = Field(
        default=True,
        description="Send HEAD, GET, PUT and GetObjectTagging over a lean aiohttp path signed "
        "by botocore's SigV4 signer (several times less CPU per request), failing exactly as "
        "aiobotocore would; a request it would not encode as botocore does goes through "
        "aiobotocore before anything is sent. false: aiobotocore only.",
    )
    crt_signer: bool = Field(
        default=True,
        description="Sign the lean path's requests with the AWS Common Runtime (awscrt, "
        "through botocore's CRT signer; a third of the CPU of the pure-Python signer). false, "
        "or BOTO_DISABLE_CRT=true: botocore's pure-Python SigV4 signer.",
    )
    copy_if_match: Literal["auto", "true", "false"] = Field(
        default="auto",
        description="Rewrite with an in-place CopyObject under If-Match (server-side, no bytes "
        "through the enforcer) where the store checks If-Match on CopyObject: auto = AWS "
        "endpoints only. MinIO ignores it there: never true for MinIO.",
    )

    def options(self) -> S3Options:
        """What the S3 adapter is given; ``copy_if_match: auto`` means AWS endpoints only
        (MinIO ignores If-Match on CopyObject)."""
        copy_if_match = self.copy_if_match == "true" or (
            self.copy_if_match == "auto" and is_aws_endpoint(self.endpoint_url)
        )
        return S3Options(
            endpoint_url=self.endpoint_url,
            region=self.region,
            access_key_id=reveal(self.access_key_id),
            secret_access_key=reveal(self.secret_access_key),
            ca_bundle=self.ca_bundle,
            max_pool_connections=self.max_pool_connections,
            lean_requests=self.lean_requests,
            crt_signer=self.crt_signer,
            copy_if_match=copy_if_match,
            multipart_threshold=self.multipart_threshold,
            part_size=self.part_size,
        )


class KmsSettings(_Section):
    kind: Literal["kes", "aws", "none"] = "none"
    endpoint: HttpUrl | None = None
    client_cert: FilePath | None = None
    client_key: FilePath | None = None
    ca_path: FilePath | None = None
    api_key: SecretStr | None = None
    region: str | None = None

    @model_validator(mode="after")
    def _kes_needs_credentials(self) -> KmsSettings:
        if self.kind == "kes":
            if not self.endpoint:
                raise ValueError("kms.endpoint is required when kms.kind is 'kes'")
            if self.api_key is None and not (self.client_cert and self.client_key):
                raise ValueError(
                    "kms.kind 'kes' needs kms.client_cert + kms.client_key or kms.api_key"
                )
        return self


class ForwardSettings(_Section):
    """``enforcer forward sqs``: S3 event notifications from an SQS queue onto Kafka."""

    queue_url: HttpUrl | None = Field(
        default=None,
        description="The SQS queue S3 (or EventBridge, SNS) delivers to; --queue-url wins",
    )
    region: str | None = Field(
        default=None,
        description="The queue's AWS region (default: read from the queue URL, else the AWS "
        "chain: AWS_REGION)",
    )
    endpoint_url: HttpUrl | None = Field(
        default=None, description="SQS endpoint (a VPC endpoint, a test server); default AWS's"
    )
    topic: str | None = Field(
        default=None, description="Kafka topic to produce to (default: the first input topic)"
    )
    batch_size: int = Field(default=10, ge=1, le=10, description="Messages per receive (SQS: 1-10)")
    wait_time: int = Field(
        default=20, ge=0, le=20, description="Seconds one receive long-polls (SQS: 0-20)"
    )


class OutageSettings(_Section):
    """The outage gate: when to pause consumption, how often to probe, how often to log."""

    failures_before_pause: int = Field(
        default=3, ge=1, description="Failures of one dependency in a row that pause consumption"
    )
    probe_interval: float = Field(
        default=5.0, gt=0, description="Seconds between probes of a dependency that is down"
    )
    log_interval: float = Field(
        default=60.0, gt=0, description="Seconds between 'still down' log lines while paused"
    )


class KeysSettings(_Section):
    """Events of a key that is unusable (missing, disabled, or refused to the storage by the
    KMS): parked, retried with backoff, dead-lettered after the patience."""

    park_patience: float = Field(
        default=900.0,
        gt=0,
        description="Seconds an event waits, parked, for its key to work again before it is "
        "dead-lettered with its reason; also how far a key that stays unusable can hold its "
        "partitions' committed offsets back",
    )
    park_capacity: int = Field(
        default=10_000,
        ge=0,
        description="Parked events held in memory at most; beyond that an event waits for its "
        "key in the consumer's window (which then fills up)",
    )
    retry_max_interval: float = Field(
        default=60.0,
        gt=0,
        description="Seconds between two retries of an unusable key at most (the backoff "
        "starts at one second)",
    )


#: Old top-level names of outage settings (they govern storage outages too) → new field.
LEGACY_OUTAGE_SETTINGS = {
    "kms_failures_before_pause": "failures_before_pause",
    "kms_probe_interval": "probe_interval",
}


class RetrySettings(_Section):
    attempts: int = Field(default=5, ge=1)
    timeout: float = Field(default=30.0, gt=0, description="Seconds, all attempts together")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ENFORCER_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    kms: KmsSettings = Field(default_factory=KmsSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    outage: OutageSettings = Field(default_factory=OutageSettings)
    keys: KeysSettings = Field(default_factory=KeysSettings)
    forward: ForwardSettings = Field(default_factory=ForwardSettings)
    policy_file: FilePath | None = None
    mode: Mode = Mode.ENFORCE
    concurrency: int = Field(default=16, ge=1, description="Objects handled at once")
    workers: int | None = Field(
        default=None,
        ge=1,
        description="enforcer run: consumer processes in the group under one supervisor "
        "(--workers wins); default: the cores this process may use (CPU affinity, bounded by "
        "the cgroup CPU quota, i.e. the pod's CPU limit)",
    )
    backfill_ranges: int = Field(
        default=2,
        ge=0,
        description="Backfill key ranges one `enforcer run` replica lists at once (0: takes none)",
    )
    bucket_default_ttl: float = Field(default=60.0, ge=0, description="Seconds")
    shutdown_timeout: float = Field(default=20.0, gt=0, description="Seconds")
    health_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Serve /healthz, /readyz and /metrics (Prometheus) on this port",
    )
    health_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - the kubelet probes the pod IP
        min_length=1,
        description="Address the health server binds (127.0.0.1 keeps it off the network)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="Overridden by --log-level"
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="json: one object per line with trace_id/span_id"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the config file (passed as init kwargs), which beats defaults.
        return env_settings, init_settings


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from env + optional YAML file; raise ConfigError naming the bad field."""
    _reject_unknown_variables()
    data: dict[str, Any] = {}
    if config_file is not None:
        data = _read_yaml(config_file)
    data.update(overrides)
    _apply_legacy_outage_names(data)
    try:
        settings = Settings(**data)
        if overrides:  # explicit overrides (CLI flags) beat the environment too
            settings = settings.model_copy(update=overrides)
    except ValidationError as exc:
        raise ConfigError(describe_setting_error(exc)) from None
    except SettingsError as exc:  # a value the environment source could not even decode
        raise ConfigError(f"invalid configuration: {exc}") from None
    return settings


def _apply_legacy_outage_names(data: dict[str, Any]) -> None:
    """``ENFORCER_KMS_FAILURES_BEFORE_PAUSE`` / ``ENFORCER_KMS_PROBE_INTERVAL`` (and the same
    config-file keys) still work, as ``outage.*``, with one deprecation warning each; the new
    ``ENFORCER_OUTAGE__*`` name wins when both are set."""
    for old, new in LEGACY_OUTAGE_SETTINGS.items():
        env_name = f"ENFORCER_{old.upper()}"
        value, given_as = data.pop(old, None), old
        if env_name in os.environ:
            value, given_as = os.environ[env_name], env_name
        if value is None:
            continue
        _warn_once(
            f"setting {given_as} is deprecated: use ENFORCER_OUTAGE__{new.upper()} "
            f"(outage.{new} in a config file)"
        )
        if f"ENFORCER_OUTAGE__{new.upper()}" not in os.environ:
            section = data.setdefault("outage", {})
            if isinstance(section, dict):
                section.setdefault(new, value)


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logging.getLogger(__name__).warning("%s", message)


def describe_setting_error(exc: ValidationError) -> str:
    """One line naming the setting (dotted and as its ``ENFORCER_*`` variable) and the problem."""
    where, message = describe_validation(exc)
    message = message.removeprefix("Value error, ")
    if message.startswith("ENFORCER_"):  # a section's own check names its variables
        return f"invalid configuration: {message}"
    env = "ENFORCER_" + where.replace(".", "__").upper()
    return f"invalid configuration {where or '(top level)'} ({env}): {message}"


def _reject_unknown_variables() -> None:
    """A misspelt ENFORCER_* variable would otherwise be ignored silently (nested ones are
    caught by validation)."""
    known = set(Settings.model_fields)
    for name in os.environ:
        if name.startswith("ENFORCER_"):
            field = name.removeprefix("ENFORCER_").split("__")[0].lower()
            if field not in known and field not in LEGACY_OUTAGE_SETTINGS:
                names = "|".join(sorted(known)).upper()
                raise ConfigError(f"unknown setting {name}: known are ENFORCER_<{names}>")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    return document
