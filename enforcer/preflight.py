"""What ``enforcer run`` checks before it consumes anything, so a bad setting fails at start.

Each check is one function over an adapter; a setting that cannot work raises
:class:`~enforcer.errors.ConfigError` naming the setting (exit code 2, one line). A storage or KMS
that is merely down is an outage, not a misconfiguration: ``enforcer run`` logs that it could not
check it and starts (the outage gate waits for it); Kafka must answer, or there is nothing to do.
Missing audit and dead-letter topics are created here, so their first use does not log "topic not
found".
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


async def check_buckets(listing: StorageProbe, buckets: Iterable[str], source: str) -> None:
    """Every bucket named (by ``source``: the policy file, a URL) exists, and we may see it."""
    for bucket in sorted(set(buckets)):
        try:
            exists = await listing.bucket_exists(bucket)
        except AccessDenied as exc:
            raise ConfigError(f"bucket {bucket!r} ({source}): access denied: {exc}") from None
        if not exists:
            raise ConfigError(f"bucket {bucket!r} ({source}) does not exist")


async def check_kms(kms: Kms, policy: PolicyFile, source: str) -> None:
    """The KMS answers, accepts us, and knows every key a policy rule names."""
    try:
        await kms.check_ready()
    except CredentialsRejected as exc:
        raise ConfigError(f"the KMS rejects our identity ({KMS_CREDENTIALS}): {exc}") from None
    for name in sorted({key for rule in policy.rules for key in (rule.key, *rule.accepted_keys)}):
        try:
            info = await kms.describe_key(name)
        except KeyMissing:
            raise ConfigError(f"policy key {name!r} ({source}) does not exist in the KMS") from None
        except AccessDenied as exc:
            raise ConfigError(f"policy key {name!r} ({source}): access denied: {exc}") from None
        if info.state is not KeyState.ENABLED:  # a runtime condition: alerted per object
            log.warning("policy key %r is %s: its objects will fail until it is enabled",
                        name, info.state.value)  # fmt: skip


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
    does not log "topic not found"."""
    async with open_admin(settings) as admin:
        existing = set(await kafka_call(admin.list_topics(), "listing topics"))
        like = settings.topics[0]
        if wanted := {settings.audit_topic, settings.dlq_topic} - existing:
            variables = "ENFORCER_KAFKA__AUDIT_TOPIC / ENFORCER_KAFKA__DLQ_TOPIC"
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
    """Everything ``enforcer run`` can check before it consumes."""
    source = f"ENFORCER_POLICY_FILE {settings.policy_file}"
    try:
        await check_s3_credentials(listing)
        await check_buckets(listing, [rule.bucket for rule in policy.rules], source)
    except TransientError as exc:
        _unchecked("S3", exc)
    if kms is not None:
        try:
            await check_kms(kms, policy, source)
        except TransientError as exc:
            _unchecked("the KMS", exc)
    await check_input_topics(kafka)
    await ensure_output_topics(kafka)


def _unchecked(what: str, exc: TransientError) -> None:
    """A dependency that is down at start is an outage, not a bad setting: the service starts,
    and the outage gate holds consumption until it answers."""
    log.warning("could not check %s at start (%s); starting anyway", what, exc)


async def check_scan(kafka: KafkaOptions, listing: StorageProbe, bucket: str) -> None:
    """What ``enforcer scan`` needs: credentials, the bucket, somewhere to put its records."""
    await check_s3_credentials(listing)
    await check_buckets(listing, [bucket], "the scanned URL")
    await ensure_output_topics(kafka)
