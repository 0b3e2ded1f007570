"""Wiring: settings → adapter options → adapters → engine → consumer.

The one place that knows both sides: the engine (:mod:`enforcer.engine`, which owns its ports)
and the adapters that implement them (:mod:`enforcer.storage`, :mod:`enforcer.kms`,
:mod:`enforcer.kafka`). Adapters are given plain options the settings build
(``settings.s3.options()``); nothing here decides anything. Every client lives in an async
context manager, closed on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer

from enforcer import telemetry
from enforcer.config import KmsSettings, Settings, reveal
from enforcer.core.policy import Mode, PolicyFile, RequiredKey, Strategy, load_policy_file
from enforcer.core.verdict import rewrite_dual_layer
from enforcer.engine.backfill import RangeRunner
from enforcer.engine.guard import ObjectGuard
from enforcer.engine.handler import RecordHandler
from enforcer.engine.objects import ListedObject, ObjectSnapshot, SseKmsTarget, WriteResult
from enforcer.engine.outage import OutageGate, Probe
from enforcer.engine.outcome import Dependency
from enforcer.engine.parking import KeyParking
from enforcer.engine.pipeline import Pipeline, Rewriter
from enforcer.engine.ports import Kms, RecordSink
from enforcer.engine.rules import AliasResolver, KeyCanon, RuleResolver
from enforcer.errors import ConfigError, EnforcerError
from enforcer.health import Readiness, readiness_of, serve_health
from enforcer.kafka.clients import open_consumer
from enforcer.kafka.consumer import EventConsumer
from enforcer.kafka.lanes import BackfillLane
from enforcer.kafka.options import KafkaOptions
from enforcer.kafka.ranges import KafkaRangeJob, RangeTaskConsumer
from enforcer.kafka.sink import open_kafka_sink
from enforcer.preflight import check_run
from enforcer.retrying import RetryPolicy
from enforcer.signals import stop_on_signals
from enforcer.storage.s3 import S3Storage, open_s3_storage

log = logging.getLogger(__name__)


@asynccontextmanager
async def open_kms(settings: KmsSettings) -> AsyncIterator[Kms]:
    """The configured KMS adapter (``kms.kind`` kes or aws), closed on exit."""
    if settings.kind == "kes":
        from enforcer.kms.kes import KesKms

        assert settings.endpoint is not None  # checked by KmsSettings
        async with KesKms(
            settings.endpoint,
            client_cert=settings.client_cert,
            client_key=settings.client_key,
            ca_path=settings.ca_path,
            api_key=reveal(settings.api_key),
        ) as kes:
            yield kes
    elif settings.kind == "aws":
        from enforcer.kms.aws import open_aws_kms

        async with open_aws_kms(settings.endpoint, settings.region) as aws:
            yield aws
    else:
        raise ConfigError(f"kms.kind {settings.kind!r} has no KMS client")


@dataclass
class Runtime:
    settings: Settings
    storage: S3Storage
    kms: Kms | None
    pipeline: Pipeline
    policy: PolicyFile


@asynccontextmanager
async def open_runtime(settings: Settings, mode: Mode) -> AsyncIterator[Runtime]:
    """Storage, KMS and the pipeline, ready to handle events."""
    policy = load_policy_file(settings.policy_file)
    envelope_rules = [r for r in policy.rules if r.strategy is Strategy.ENVELOPE]
    if envelope_rules and settings.kms.kind == "none":
        rule = envelope_rules[0]
        raise ConfigError(
            f"policy rule for {rule.bucket}/{rule.prefix} uses strategy envelope, which needs a "
            "KMS: set ENFORCER_KMS__KIND (kes or aws)"
        )
    async with AsyncExitStack() as stack:
        storage = await stack.enter_async_context(open_s3_storage(settings.s3.options()))
        kms = (
            await stack.enter_async_context(open_kms(settings.kms))
            if settings.kms.kind != "none"
            else None
        )
        retry = RetryPolicy(attempts=settings.retry.attempts, timeout=settings.retry.timeout)
        pipeline = Pipeline(
            storage=storage,
            rules=RuleResolver(policy, storage, settings.bucket_default_ttl),
            keys=KeyCanon(_alias_resolver(kms, settings)),
            mode=mode,
            rewriters=_rewriters(storage, kms, settings),
            retry=retry,
        )
        yield Runtime(settings, storage, kms, pipeline, policy)


def _alias_resolver(kms: Kms | None, settings: Settings) -> AliasResolver | None:
    if kms is None or settings.kms.kind != "aws":
        return None

    async def resolve(alias: str) -> str:
        return (await kms.describe_key(alias)).key_id

    return resolve


def _rewriters(storage: S3Storage, kms: Kms | None, settings: Settings) -> dict[Strategy, Rewriter]:
    async def sse_kms(
        snapshot: ObjectSnapshot, required: RequiredKey, tags: dict[str, str]
    ) -> WriteResult:
        dsse = rewrite_dual_layer(snapshot.encryption, required.strategy)  # never a downgrade
        return await storage.rewrite_sse_kms(snapshot, SseKmsTarget(required.key, dsse), tags)

    rewriters: dict[Strategy, Rewriter] = {Strategy.SSE_KMS: sse_kms, Strategy.DSSE_KMS: sse_kms}
    if kms is not None:
        from enforcer.engine.envelope import envelope_rewriter

        rewriters[Strategy.ENVELOPE] = envelope_rewriter(
            storage,
            kms,
            multipart_threshold=settings.s3.multipart_threshold,
            part_size=settings.s3.part_size,
        )
    return rewriters


def object_guard(
    runtime: Runtime, sink: RecordSink, mode: Mode, *, waits_out_outages: bool = True
) -> ObjectGuard:
    """The per-object guard of ``enforcer run`` (and, not waiting out outages, of ``scan``),
    with its outage gate probing this runtime's storage and KMS."""
    settings = runtime.settings
    gate = OutageGate(
        threshold=settings.outage.failures_before_pause,
        probe_interval=settings.outage.probe_interval,
        probes=_probes(runtime.storage, runtime.kms),
        log_interval=settings.outage.log_interval,
    )
    parking = KeyParking(
        patience=settings.keys.park_patience,
        capacity=settings.keys.park_capacity,
        retry_max=settings.keys.retry_max_interval,
    )
    return ObjectGuard(runtime.pipeline, sink, gate, mode, concurrency=settings.concurrency,
                       waits_out_outages=waits_out_outages, parking=parking)  # fmt: skip


def _probes(storage: S3Storage, kms: Kms | None) -> dict[Dependency, Probe]:
    """Each dependency's own probe. Without a KMS client MinIO holds the KMS connection: the
    gate's trial event is the only test of it."""
    probes: dict[Dependency, Probe] = {Dependency.STORAGE: storage.check_identity}
    if kms is not None:
        probes[Dependency.KMS] = kms.check_ready
    return probes


async def _first_identity_check(storage: S3Storage) -> None:
    """Arms the storage probe's revoked-credentials rule; a failure here is the preflight's
    business (or the gate's, once events fail), never fatal."""
    with contextlib.suppress(EnforcerError):
        await storage.check_identity()


async def run_service(settings: Settings, mode: Mode, drain_idle: float | None = None) -> int:
    """``enforcer run``: consume until SIGTERM (or, with ``drain_idle``, until caught up)."""
    async with open_runtime(settings, mode) as runtime:
        kafka = settings.kafka.options()
        await check_run(settings, kafka, runtime.storage.listing, runtime.kms, runtime.policy)
        await _first_identity_check(runtime.storage)
        return await _consume(settings, mode, runtime, drain_idle)


async def _consume(
    settings: Settings, mode: Mode, runtime: Runtime, drain_idle: float | None
) -> int:
    kafka_options = settings.kafka.options()
    async with open_kafka_sink(kafka_options) as sink:
        guard = object_guard(runtime, sink, mode)
        gate = guard.gate
        handler = RecordHandler(guard)
        lane = backfill_lane(kafka_options)
        async with open_consumer(kafka_options, settings.kafka.group_id, "events") as kafka:
            consumer = EventConsumer(
                kafka,
                handler,
                gate=gate,
                concurrency=settings.concurrency,
                shutdown_timeout=settings.shutdown_timeout,
                drain_idle=drain_idle,
                backfill=lane,
                rebalance_wait=min(
                    settings.shutdown_timeout, settings.kafka.max_poll_interval_ms / 2000
                ),
            )
            handler.listener = consumer  # parked messages leave the consumer's window
            topics = [*settings.kafka.topics, *([lane.topic] if lane else [])]
            kafka.subscribe(topics, listener=consumer.rebalance_listener())
            log.info(
                "consuming %s as group %s (mode %s)%s",
                settings.kafka.topics,
                settings.kafka.group_id,
                mode.value,
                f", backfill events from {lane.topic} with spare capacity" if lane else "",
            )
            async with AsyncExitStack() as running:
                ranges = await running.enter_async_context(
                    _range_tasks(settings, runtime, guard, consumer, drain_idle)
                )
                running.enter_context(stop_on_signals(lambda: _stop(consumer, ranges)))
                if settings.health_port is not None:
                    await running.enter_async_context(
                        serve_health(
                            settings.health_port,
                            _readiness(kafka, consumer, gate),
                            settings.health_host,
                            metrics=telemetry.render_metrics,
                        )
                    )
                async with asyncio.TaskGroup() as group:
                    group.create_task(consumer.run())
                    if ranges is not None:
                        group.create_task(ranges.run())
            log.info("stopped after %d records", consumer.handled)
            return consumer.handled


def backfill_lane(kafka: KafkaOptions) -> BackfillLane | None:
    """The backfill topic as a lane of its own; None when it is one of the notification topics
    (its events are then live ones)."""
    if kafka.backfill_topic in kafka.topics:
        return None
    return BackfillLane(kafka.backfill_topic, kafka.backfill_max_live_lag)


def _readiness(kafka: AIOKafkaConsumer, consumer: EventConsumer, gate: OutageGate) -> Readiness:
    def ready() -> tuple[bool, str]:
        if gate.is_open:
            return False, gate.describe()
        return readiness_of(
            paused=False, joined=consumer.joined, partitions=len(kafka.assignment())
        )

    return ready


def _stop(consumer: EventConsumer, ranges: RangeTaskConsumer | None) -> None:
    consumer.stop()
    if ranges is not None:
        ranges.stop()


@asynccontextmanager
async def _range_tasks(
    settings: Settings,
    runtime: Runtime,
    guard: ObjectGuard,
    live: EventConsumer,
    drain_idle: float | None,
) -> AsyncIterator[RangeTaskConsumer | None]:
    """The backfill-tasks consumer of this replica (its own group, ``<group>.backfill``):
    ranges listed with the service's guard, an object started only when the ``live``
    consumer leaves room; None with ``ENFORCER_BACKFILL_RANGES=0``."""
    if settings.backfill_ranges == 0:
        yield None
        return
    kafka = settings.kafka.options()
    listing = runtime.storage.listing
    listing.ask_for_metadata()
    owner = f"{socket.gethostname()}:{os.getpid()}"

    def list_range(
        bucket: str, prefix: str, after: str | None, through: str | None
    ) -> AsyncIterator[ListedObject]:
        return listing.list_objects(bucket, prefix, start_after=after, through=through)

    def new_job() -> KafkaRangeJob:
        return KafkaRangeJob(kafka, RangeRunner(guard, list_range, owner=owner, capacity=live))

    group = f"{settings.kafka.group_id}.backfill"
    async with open_consumer(kafka, group, "ranges", max_poll_records=1) as tasks:
        ranges = RangeTaskConsumer(tasks, new_job, max_ranges=settings.backfill_ranges,
                                   shutdown_timeout=settings.shutdown_timeout,
                                   drain_idle=drain_idle)  # fmt: skip
        tasks.subscribe([kafka.backfill_tasks_topic], listener=ranges.rebalance_listener())
        yield ranges
