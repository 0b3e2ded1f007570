"""The forwarder's queue port on Amazon SQS (aiobotocore); botocore errors become the
enforcer's error tree here and nowhere else.

botocore's own retries are off (:mod:`enforcer.retrying` is the one place retries happen); the
read timeout outlasts the long poll. Credentials come from the default AWS chain (IRSA, EKS Pod
Identity, instance profile, ``AWS_*`` variables).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
)

from enforcer.errors import (
    AccessDenied,
    ConfigError,
    CredentialsRejected,
    EnforcerError,
    QueueUnavailable,
)
from enforcer.forward.forwarder import QueueMessage

log = logging.getLogger(__name__)

T = TypeVar("T")

#: ``https://sqs.<region>.amazonaws.com[.cn]/...`` and the legacy ``https://<region>.queue...``.
_REGION_IN_URL = re.compile(
    r"^https://(?:sqs\.(?P<a>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?|(?P<b>[a-z0-9-]+)\.queue"
    r"\.amazonaws\.com(?:\.cn)?)/"
)
_MISSING = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_CREDENTIALS = {
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "MissingAuthenticationToken",
}
_DENIED = {"AccessDenied", "AccessDeniedException", "KmsAccessDenied"}
_TRANSIENT = {
    "ThrottlingException",
    "RequestThrottled",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "KmsThrottled",
    "KmsUnavailable",
}


def queue_region(queue_url: str) -> str | None:
    """The region an AWS queue URL names (None for other hosts: a test server, a proxy)."""
    found = _REGION_IN_URL.match(queue_url)
    return (found.group("a") or found.group("b")) if found else None


def translate(exc: ClientError | BotoCoreError, what: str) -> EnforcerError:
    """One botocore error → the enforcer's tree (the message names the setting to fix)."""
    if isinstance(exc, NoRegionError):
        return ConfigError(f"SQS needs a region: set ENFORCER_FORWARD__REGION ({what})")
    if isinstance(exc, NoCredentialsError | ParamValidationError):
        return ConfigError(f"SQS {what}: {exc}")
    if not isinstance(exc, ClientError):
        return QueueUnavailable(f"SQS {what}: {type(exc).__name__}: {exc}")
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    message = f"SQS {what}: {code} ({error.get('Message', '')})"
    if code in _MISSING:
        return ConfigError(f"{message}: no such queue (ENFORCER_FORWARD__QUEUE_URL)")
    kind = _error_class(code, status)
    return kind(message)


def _error_class(code: str, status: int) -> type[EnforcerError]:
    if code in _CREDENTIALS:
        return CredentialsRejected
    if code in _DENIED or status == 403:
        return AccessDenied
    if code in _TRANSIENT or status >= 500 or status == 429:
        return QueueUnavailable
    return ConfigError


async def _call(call: Awaitable[T], what: str) -> T:
    try:
        return await call
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, what) from exc
    except (TimeoutError, OSError) as exc:
        raise QueueUnavailable(f"SQS {what}: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class QueueInfo:
    visibility_timeout: int
    redrive_policy: str | None


class SqsQueue:
    """The :class:`~enforcer.forward.forwarder.MessageQueue` port over one SQS queue."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self.queue_url = queue_url

    async def describe(self) -> QueueInfo:
        """The queue's visibility timeout and redrive policy (GetQueueAttributes)."""
        response = await _call(
            self._client.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
            ),
            "GetQueueAttributes",
        )
        attributes = response.get("Attributes", {})
        return QueueInfo(
            int(attributes.get("VisibilityTimeout", 30)), attributes.get("RedrivePolicy")
        )

    async def receive(self, max_messages: int, wait_seconds: int) -> list[QueueMessage]:
        response = await _call(
            self._client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=max_messages,
                WaitTimeSeconds=wait_seconds,
            ),
            "ReceiveMessage",
        )
        return [
            QueueMessage(m["MessageId"], m["ReceiptHandle"], m.get("Body", ""))
            for m in response.get("Messages", [])
        ]

    async def delete(self, messages: Sequence[QueueMessage]) -> None:
        entries = [
            {"Id": str(n), "ReceiptHandle": m.receipt_handle} for n, m in enumerate(messages)
        ]
        response = await _call(
            self._client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries),
            "DeleteMessageBatch",
        )
        for failed in response.get("Failed", []):  # e.g. a receipt handle that expired
            message = messages[int(failed["Id"])]
            log.warning("SQS could not delete message %s (%s: %s): it comes back and is "
                        "forwarded again (harmless)", message.message_id, failed.get("Code"),
                        failed.get("Message"))  # fmt: skip


@asynccontextmanager
async def open_sqs_queue(
    queue_url: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    wait_time: int = 20,
) -> AsyncIterator[SqsQueue]:
    """An SQS client for ``queue_url``: its endpoint is ``endpoint_url`` or the queue URL's own
    origin; its region ``region``, the one the URL names, or the AWS chain's. A receive
    long-polls up to ``wait_time`` seconds."""
    parts = urlsplit(queue_url)
    endpoint = endpoint_url or f"{parts.scheme}://{parts.netloc}"
    config = AioConfig(
        retries={"total_max_attempts": 1, "mode": "standard"},  # retries are ours
        connect_timeout=10,
        read_timeout=wait_time + 10,
    )
    region = region or queue_region(queue_url)
    try:
        async with get_session().create_client(
            "sqs", region_name=region, endpoint_url=endpoint, config=config
        ) as client:
            yield SqsQueue(client, queue_url)
    except NoRegionError as exc:  # raised while the client is created, before any request
        raise translate(exc, "client") from None
