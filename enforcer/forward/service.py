"""Wiring ``enforcer forward sqs``: the SQS queue, the Kafka producer, signals and health.

Before it receives anything it checks what it can: the queue exists and lets us in (exit 2
otherwise), the topic exists (exit 2), Kafka answers (exit 1). SQS merely down at start is an
outage: it is logged, and the receive loop waits for it.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

from aiokafka import AIOKafkaProducer

from enforcer import telemetry
from enforcer.config import Settings
from enforcer.errors import AccessDenied, ConfigError, TransientError
from enforcer.forward.forwarder import Forwarder, ForwardSummary
from enforcer.forward.messages import KafkaRecord
from enforcer.forward.sqs import SqsQueue, open_sqs_queue
from enforcer.health import serve_health
from enforcer.kafka.clients import kafka_call, open_admin, open_producer
from enforcer.kafka.options import KafkaOptions
from enforcer.signals import stop_on_signals

log = logging.getLogger(__name__)


class KafkaTopicPublisher:
    """The forwarder's publisher port: one topic, the project's idempotent ``acks=all``
    producer; ``publish`` returns once the broker has the record."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    async def publish(self, record: KafkaRecord) -> None:
        await kafka_call(self._producer.send_and_wait(self.topic, value=record.value,
                                                      key=record.key),
                         f"publishing to {self.topic}")  # fmt: skip


async def run_forwarder(settings: Settings, queue_url: str, *, drain: bool) -> ForwardSummary:
    """Forward from ``queue_url`` until SIGTERM/SIGINT (or, with ``drain``, until the queue
    returns nothing)."""
    topic = settings.forward.topic or settings.kafka.topics[0]
    kafka, sqs = settings.kafka.options(), settings.forward
    async with AsyncExitStack() as stack:
        opened = open_sqs_queue(
            queue_url, endpoint_url=sqs.endpoint_url, region=sqs.region, wait_time=sqs.wait_time
        )
        queue = await stack.enter_async_context(opened)
        await check_queue(queue)
        await check_topic(kafka, topic)
        producer = await stack.enter_async_context(open_producer(kafka, "forward"))
        forwarder = Forwarder(
            queue,
            KafkaTopicPublisher(producer, topic),
            batch_size=settings.forward.batch_size,
            wait_time=settings.forward.wait_time,
            drain=drain,
            shutdown_timeout=settings.shutdown_timeout,
        )
        if settings.health_port is not None:
            await stack.enter_async_context(
                serve_health(
                    settings.health_port,
                    forwarder.readiness,
                    settings.health_host,
                    metrics=telemetry.render_metrics,
                )
            )
        with stop_on_signals(forwarder.stop):
            log.info("forwarding %s to Kafka topic %s", queue_url, topic)
            summary = await forwarder.run()
        log.info("stopped: %s", summary.as_dict())
        return summary


async def check_queue(queue: SqsQueue) -> None:
    """The queue exists and lets us in; a queue without a redrive policy is worth a warning."""
    try:
        info = await queue.describe()
    except AccessDenied as exc:
        raise ConfigError(
            f"{exc} (the credentials of the AWS chain may not read the queue: grant "
            "sqs:GetQueueAttributes, sqs:ReceiveMessage, sqs:DeleteMessage)"
        ) from None
    except TransientError as exc:
        log.warning("could not check the queue at start (%s); starting anyway", exc)
        return
    if info.redrive_policy is None:
        log.warning("queue %s has no redrive policy: a message Kafka refuses for good stays "
                    "on it until its retention ends", queue.queue_url)  # fmt: skip


async def check_topic(kafka: KafkaOptions, topic: str) -> None:
    """The topic to produce to exists (producing to a missing one may create it, or wait)."""
    async with open_admin(kafka, "forward-admin") as admin:
        existing = set(await kafka_call(admin.list_topics(), "listing topics"))
    if topic not in existing:
        raise ConfigError(
            f"topic {topic} does not exist (ENFORCER_FORWARD__TOPIC, default the first of "
            "ENFORCER_KAFKA__TOPICS)"
        )
