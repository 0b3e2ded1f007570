"""What the KMS adapters share: one traced, retried call, and the probe's retry policy.

The port they implement (:class:`enforcer.engine.ports.Kms`, with its value types) belongs to the
engine. Adapters (:mod:`.kes`, :mod:`.aws`) translate their library's errors into
:mod:`enforcer.errors` once, at their boundary. Plaintext keys never reach a repr, a log line, an
error message or a span attribute.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from enforcer.retrying import RetryPolicy, retry_transient
from enforcer.telemetry import step

T = TypeVar("T")


# A readiness probe answers once; the consumer's probe loop owns the cadence.
PROBE_POLICY = RetryPolicy(attempts=1)


async def traced(
    span_name: str,
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy | None = None,
    **attributes: str,
) -> T:
    """Run one KMS call in a span, retrying transient failures; the span records the attempts."""
    with step(span_name, **attributes) as span:
        value, attempts = await retry_transient(call, policy)
        span.set_attribute("kms.attempts", attempts)
        return value
