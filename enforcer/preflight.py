"""What ``enforcer run`` checks before it consumes anything, so a bad setting fails at start.

Each check is one function over an adapter; a setting that cannot work raises
:class:`~enforcer.errors.ConfigError` naming the setting (exit code 2, one line). A storage or KMS
that is merely down is an outage, not a misconfiguration: ``enforcer run`` logs that it could not
check it and starts (the outage gate waits for it); Kafka must answer, or there is nothing to do.
Missing audit, dead-letter and backfill topics are created here, so their first use does not log
"topic not found".

A policy bucket or key that does not exist is a fact about one tenant, not a bad setting of the
service: ``enforcer run`` reports each (one ERROR line per name, the gauges
``enforcer_policy_bucket_missing`` and ``enforcer_key_available``) and enforces every other
bucket; the bucket's events are audited as ``gone``, the key's dead-lettered as
``key_missing``. ``enforcer policy check`` is the strict form for CI: it refuses such a policy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from enforcer.config import Settings
from enforcer.core.policy import PolicyFile
from enforcer.engine.ports import KeyState, Kms
from enforcer.errors import (
    AccessDenied,
    ConfigError,
    CredentialsRejected,
    KeyMissing,
    TransientError,
)
from enforcer.kafka.clients import kafka_call, open_admin
from enforcer.kafka.options import KafkaOptions
from enforcer.telemetry import KEY_AVAILABLE, POLICY_BUCKET_MISSING

log = logging.getLogger(__name__)


class StorageProbe(Protocol):
    """What the checks ask of the storage (:class:`~enforcer.storage.listing.S3Listing`)."""

    async def authenticate(self) -> None: ...

    async def bucket_exists(self, bucket: str) -> bool: ...


S3_CREDENTIALS = "ENFORCER_S3__ACCESS_KEY_ID, ENFORCER_S3__SECRET_ACCESS_KEY"
KMS_CREDENTIALS = "ENFORCER_KMS__CLIENT_CERT, ENFORCER_KMS__CLIENT_KEY or ENFORCER_KMS__API_KEY"


async def check_s3_credentials(listing: StorageProbe) -> None:
    """A signed request the store must accept."""
    try:
        await listing.authenticate()
    except CredentialsRejected as exc:
        raise ConfigError(f"S3 rejects the credentials ({S3_CREDENTIALS}): {exc}") from None


async def missing_buckets(listing: StorageProbe, buckets: Iterable[str], source: str) -> list[str]:
    """The buckets named (by ``source``: the policy file, a URL) that do not exist; one we may
    not see is a bad setting (of our permissions)."""
    missing = []
    for bucket in sorted(set(buckets)):
        try:
            exists = await listing.bucket_exists(bucket)
        except AccessDenied as exc:
            raise ConfigError(f"bucket {bucket!r} ({source}): access denied: {exc}") from None
        if not exists:
            missing.append(bucket)
    return missing


async def check_buckets(listing: StorageProbe, buckets: Iterable[str], source: str) -> None:
    """Every bucket named exists, and we may see it (strict: a missing one is a ConfigError)."""
    if missing := await missing_buckets(listing, buckets, source):
        raise ConfigError(f"bucket {missing[0]!r} ({source}) does not exist")


def policy_buckets(policy: PolicyFile) -> list[str]:
    """Every bucket a policy rule names, sorted."""
    return sorted({rule.bucket for rule in policy.rules})


def policy_keys(policy: PolicyFile) -> list[str]:
    """Every key a policy rule names (required or accepted), sorted."""
    return sorted({key for rule in policy.rules for key in (rule.key, *rule.accepted_keys)})


async def missing_keys(kms: Kms, policy: PolicyFile, source: str) -> list[str]:
    """The KMS answers and accepts us; the keys a policy rule names that it does not know
    (a disabled one is only logged: a runtime condition, alerted per object)."""
    try:
        await kms.check_ready()
    except CredentialsRejected as exc:
        raise ConfigError(f"the KMS rejects our identity ({KMS_CREDENTIALS}): {exc}") from None
    missing = []
    for name in policy_keys(policy):
        try:
            info = await kms.describe_key(name)
        except KeyMissing:
            missing.append(name)
            continue
        except AccessDenied as exc:
            raise ConfigError(f"policy key {name!r} ({source}): access denied: {exc}") from None
        if info.state is not KeyState.ENABLED:
            log.warning("policy key %r is %s: its objects will fail until it is enabled",
                        name, info.state.value)  # fmt: skip
    return missing


async def check_kms(kms: Kms, policy: PolicyFile, source: str) -> None:
    """The KMS answers, accepts us, and knows every key a policy rule names (strict)."""
    if missing := await missing_keys(kms, policy, source):
        raise ConfigError(f"policy key {missing[0]!r} ({source}) does not exist in the KMS")


async def check_input_topics(settings: KafkaOptions) -> None:
    """The topics to consume exist (subscribing to a missing one would wait silently)."""
    async with open_admin(settings) as admin:
        existing = set(await kafka_call(admin.list_topics(), "listing topics"))
    if missing := [t for t in settings.topics if t not in existing]:
        raise ConfigError(
            f"input topic(s) {', '.join(missing)} do not exist (ENFORCER_KAFKA__TOPICS)"
        )


#: Partitions of a new backfill-tasks topic: how many replicas can share one backfill's ranges
#: (more can be added later with ``kafka-topics --alter --partitions``).
TASK_PARTITIONS = 12
#: A compacted progress topic rolls segments often, so old progress of a range is cleaned up.
PROGRESS_TOPIC_CONFIG = {"cleanup.policy": "compact", "segment.ms": "600000"}


async def ensure_output_topics(settings: KafkaOptions) -> None:
    """The audit, DLQ and backfill topics exist, created now if missing, so their first use
    does not log "topic not found" (and the service can subscribe to the backfill topics)."""
    async with open_admin(settings) as admin:
        existing = set(await kafka_call(admin.list_topics(), "listing topics"))
        like = settings.topics[0]
        names = {settings.audit_topic, settings.dlq_topic, settings.backfill_topic}
        if wanted := names - existing:
            variables = (
                "ENFORCER_KAFKA__AUDIT_TOPIC / ENFORCER_KAFKA__DLQ_TOPIC / "
                "ENFORCER_KAFKA__BACKFILL_TOPIC"
            )
            await _create_topics(admin, sorted(wanted), like, variables)
        if settings.backfill_tasks_topic not in existing:
            await _create_topics(admin, [settings.backfill_tasks_topic], like,
                                 "ENFORCER_KAFKA__BACKFILL_TASKS_TOPIC",
                                 partitions=TASK_PARTITIONS)  # fmt: skip
        if settings.backfill_progress_topic not in existing:
            await _create_topics(admin, [settings.backfill_progress_topic], like,
                                 "ENFORCER_KAFKA__BACKFILL_PROGRESS_TOPIC",
                                 configs=PROGRESS_TOPIC_CONFIG)  # fmt: skip


async def _create_topics(
    admin: AIOKafkaAdminClient,
    names: list[str],
    like: str,
    variables: str,
    *,
    partitions: int | None = None,
    configs: dict[str, str] | None = None,
) -> None:
    """Create ``names`` with ``partitions`` or as many as ``like`` has (records keep
    per-object order either way) and the cluster's replication, up to 3."""
    if partitions is None:
        [described] = await kafka_call(admin.describe_topics([like]), f"describing {like}")
        partitions = max(1, len(described.get("partitions", [])))
    cluster: dict[str, Any] = await kafka_call(admin.describe_cluster(), "describing the cluster")
    replicas = max(1, min(3, len(cluster.get("brokers", []))))
    topics = [NewTopic(name, partitions, replicas, topic_configs=configs) for name in names]
    response = await kafka_call(admin.create_topics(topics), f"creating {', '.join(names)}")
    for name, code, *message in response.topic_errors:
        if code not in (0, TopicAlreadyExistsError.errno):
            raise ConfigError(
                f"topic {name} ({variables}) does not exist and could not be created: "
                f"error {code} {message[0] if message else ''}"
            )
    log.info("created topic(s) %s (%d partitions)", ", ".join(names), partitions)


async def check_run(
    settings: Settings,
    kafka: KafkaOptions,
    listing: StorageProbe,
    kms: Kms | None,
    policy: PolicyFile,
) -> None:
    """Everything ``enforcer run`` can check before it consumes; a policy bucket or key that
    does not exist is reported, not refused."""
    source = f"ENFORCER_POLICY_FILE {settings.policy_file}"
    buckets = policy_buckets(policy)
    try:
        await check_s3_credentials(listing)
        report_missing_buckets(buckets, await missing_buckets(listing, buckets, source), source)
    except TransientError as exc:
        _unchecked("S3", exc)
    if kms is not None:
        try:
            report_missing_keys(await missing_keys(kms, policy, source), source)
        except TransientError as exc:
            _unchecked("the KMS", exc)
    await check_input_topics(kafka)
    await ensure_output_topics(kafka)


def report_missing_buckets(buckets: list[str], missing: list[str], source: str) -> None:
    """One ERROR line per missing policy bucket, and the gauge for every policy bucket."""
    for bucket in buckets:
        POLICY_BUCKET_MISSING.set(1 if bucket in missing else 0, {"bucket": bucket})
    for bucket in missing:
        log.error("policy bucket %r (%s) does not exist: its events are audited as gone, every "
                  "other bucket is enforced; fix the policy or recreate the bucket",
                  bucket, source)  # fmt: skip


def report_missing_keys(missing: list[str], source: str) -> None:
    """One ERROR line per missing policy key; its ``enforcer_key_available`` goes to 0."""
    for name in missing:
        KEY_AVAILABLE.set(0, {"key": name})
        log.error("policy key %r (%s) does not exist in the KMS: its objects' events are parked "
                  "and dead-lettered (key_missing) after the patience unless it is created, "
                  "every other key is used",
                  name, source)  # fmt: skip


def _unchecked(what: str, exc: TransientError) -> None:
    """A dependency that is down at start is an outage, not a bad setting: the service starts,
    and the outage gate holds consumption until it answers."""
    log.warning("could not check %s at start (%s); starting anyway", what, exc)


async def check_scan(kafka: KafkaOptions, listing: StorageProbe, bucket: str) -> None:
    """What ``enforcer scan`` needs: credentials, the bucket, somewhere to put its records."""
    await check_s3_credentials(listing)
    await check_buckets(listing, [bucket], "the scanned URL")
    await ensure_output_topics(kafka)
