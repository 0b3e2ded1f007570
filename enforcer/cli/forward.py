"""``enforcer forward sqs``: carry S3 event notifications from an SQS queue onto Kafka (the
forwarder itself is :mod:`enforcer.forward`)."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from enforcer.cli.args import EXIT_OK, add_command
from enforcer.config import Settings, http_url
from enforcer.errors import ConfigError


def add_forward_command(commands: Any) -> None:
    forward = add_command(
        commands,
        "forward",
        "carry S3 event notifications onto Kafka (AWS: from SQS)",
        description="Bridges for stores that cannot publish to Kafka themselves. On AWS, S3 "
        "delivers event notifications to an SQS queue (EventBridge cannot target Kafka); "
        "'forward sqs' moves them onto the notification topic the enforcer consumes.",
        examples=["enforcer forward sqs --queue-url "
                  "https://sqs.eu-west-1.amazonaws.com/111122223333/sse-enforcer-events"],
    )  # fmt: skip
    kinds = forward.add_subparsers(dest="forward_command", required=True)
    sqs = add_command(
        kinds,
        "sqs",
        "forward S3 event notifications from an SQS queue to Kafka",
        description="Receive from the queue (S3 event notifications, EventBridge 'Object "
        "Created' events, either wrapped by SNS) and produce each S3 record to the first "
        "ENFORCER_KAFKA__TOPICS topic (or ENFORCER_FORWARD__TOPIC), keyed bucket/object. A "
        "message is deleted only after Kafka acknowledged everything produced from it; while "
        "Kafka is down the messages in hand are held and nothing more is received. s3:TestEvent "
        "is skipped; a message that is not an S3 event is produced as-is, for the enforcer's "
        "dead-letter topic. SIGTERM stops it cleanly. Prints a summary as JSON at the end.",
        examples=["enforcer forward sqs --queue-url "
                  "https://sqs.eu-west-1.amazonaws.com/111122223333/sse-enforcer-events",
                  "ENFORCER_FORWARD__QUEUE_URL=https://sqs... enforcer forward sqs",
                  "enforcer forward sqs --drain     # move what is queued now, then stop"],
    )  # fmt: skip
    sqs.add_argument("--queue-url", metavar="URL", help="default: ENFORCER_FORWARD__QUEUE_URL")
    sqs.add_argument(
        "--drain", action="store_true", help="stop at the first receive that returns nothing"
    )


def run_forward(settings: Settings, args: argparse.Namespace) -> int:
    from enforcer.forward.service import run_forwarder

    queue_url = args.queue_url or settings.forward.queue_url
    if not queue_url:
        raise ConfigError("forward sqs needs --queue-url URL or ENFORCER_FORWARD__QUEUE_URL")
    try:
        http_url(queue_url)
    except ValueError as exc:
        raise ConfigError(f"--queue-url: {exc}") from None
    summary = asyncio.run(run_forwarder(settings, queue_url, drain=args.drain))
    print(json.dumps(summary.as_dict()))
    return EXIT_OK
