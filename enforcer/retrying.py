"""The one place retries are configured (tenacity, shaped after hynek/stamina).

Every retried call goes through :func:`retry_transient`: exponential backoff with full jitter,
bounded attempts *and* bounded total time, retrying only :class:`~enforcer.errors.TransientError`
(minus the kinds the caller handles itself), and a hook that records each retry on the current
span and in metrics. Work retried on a schedule of its own (the events parked for an unusable
key, :mod:`enforcer.engine.parking`) takes its waits from :func:`backoff_delay`. Tests call
:func:`set_testing` to make waits zero.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity
from opentelemetry import trace

from enforcer.errors import EnforcerError, PreconditionFailed, TransientError
from enforcer.telemetry import RETRIES, record_error

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    timeout: float = 30.0
    wait_initial: float = 0.1
    wait_max: float = 5.0


_testing = False


def set_testing(on: bool) -> None:
    """Turn all waits to zero (tests only)."""
    global _testing  # noqa: PLW0603 - one process-wide switch, like stamina.set_testing
    _testing = on


def _record_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    name = getattr(state.fn, "__qualname__", "call")
    kind = type(exc).__name__ if exc else "unknown"
    trace.get_current_span().add_event(
        "retry", {"retry.attempt": state.attempt_number, "retry.error": kind, "retry.call": name}
    )
    RETRIES.add(1, {"error_type": exc.code if isinstance(exc, EnforcerError) else kind})


def _should_retry(exc: BaseException) -> bool:
    # A failed precondition is handled by the caller (re-inspect), never blindly retried.
    return isinstance(exc, TransientError) and not isinstance(exc, PreconditionFailed)


async def retry_transient(
    call: Callable[[], Awaitable[T]], policy: RetryPolicy | None = None
) -> tuple[T, int]:
    """Run ``call`` until it succeeds or the policy gives up; return its value and the attempts.

    The first attempt runs bare: tenacity's machinery costs more than a cached call or a Kafka
    send itself, and most calls succeed at once. Its failure, if retryable, becomes tenacity's
    first attempt, so waits, hooks, limits and the attempt count are the same either way.
    """
    policy = policy or RetryPolicy()

    def counted() -> Awaitable[T]:
        return _counted(call)

    try:
        return await counted(), 1
    except TransientError as exc:  # anything else propagates, as tenacity would let it
        if not _should_retry(exc) or policy.attempts < 2:
            raise
        first_failure: list[TransientError] = [exc]

    async def again() -> T:
        if first_failure:
            raise first_failure.pop()
        return await counted()

    retrying = tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(_should_retry),
        stop=tenacity.stop_after_attempt(policy.attempts)
        | tenacity.stop_after_delay(policy.timeout),
        wait=_wait(policy),
        before_sleep=_record_retry,
        reraise=True,
    )
    attempts = 0
    async for attempt in retrying:
        with attempt:
            attempts = attempt.retry_state.attempt_number
            value = await again()
    return value, attempts


async def retry_until_stopped(
    call: Callable[[], Awaitable[T]], stopped: Callable[[], bool], policy: RetryPolicy
) -> T:
    """Run ``call`` until it succeeds, retrying transient errors with the policy's backoff but
    without a limit on attempts or time, until ``stopped()`` says to give up (the last error
    then propagates). For work that must be held through an outage of any length rather than
    given up on (``enforcer forward sqs`` holding its messages while Kafka is down)."""
    retrying = tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(_should_retry),
        stop=lambda _state: stopped(),
        wait=_wait(policy),
        before_sleep=_record_retry,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            value = await _counted(call)
    return value


async def _counted(call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except EnforcerError as exc:
        record_error(exc.code)  # every failed attempt, retried or not
        raise


def backoff_delay(failures: int, initial: float, maximum: float) -> float:
    """Seconds to wait after ``failures`` failed tries of something retried on a schedule of its
    own (a parked key's retries): exponential from ``initial`` up to ``maximum``, with half of
    it jittered so that retries of many keys do not line up. (Not zeroed by :func:`set_testing`:
    a zero wait would turn such a schedule into a busy loop; tests pass small values.)"""
    delay = min(maximum, initial * 2.0 ** max(failures - 1, 0))
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not a secret


def _wait(policy: RetryPolicy) -> tenacity.wait.wait_base:
    if _testing:
        return tenacity.wait_none()
    return tenacity.wait_random_exponential(multiplier=policy.wait_initial, max=policy.wait_max)
