"""Parking: the events of objects whose External Key is unusable wait per key, and only they.

A key the KMS refuses the storage, or that is missing or disabled, affects only the objects that
need it. The per-object guard (:mod:`enforcer.engine.guard`) parks such an event here instead of
dead-lettering it at once:

* a parked event holds no work slot, and the consumer is told (the engine's
  :class:`~enforcer.engine.ports.ParkingListener` port) so that it no longer counts the record
  against its window; its offset stays uncommitted, so a restart handles it again;
* one parked event per key at a time — the scout — tries again, on a backoff schedule from
  ``retry_initial`` up to ``retry_max`` seconds (:func:`enforcer.retrying.backoff_delay`); when
  any event under the key works (the scout, or a new event), the key is usable again and every
  event parked for it is tried at once: enforced, without a manual replay;
* an event parked for longer than ``patience`` seconds is dead-lettered by the guard with its
  reason, so a key that stays unusable holds its partitions' committed offsets back by no more
  than that.

At most ``capacity`` events count as parked (and leave the window); beyond that an event waits
the same way but keeps its place in the consumer's window, so memory stays bounded.

Whether a refusal is the key's own or the storage's KMS identity refused (every key) is the
outage gate's call, from evidence (:meth:`enforcer.engine.outage.OutageGate.blame`); parking
logs what the evidence says, once per key and once more when it changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from enforcer.engine.outcome import Outcome
from enforcer.errors import EnforcerError, KeyDisabled, KeyMissing, KmsNotAuthorized
from enforcer.retrying import backoff_delay
from enforcer.telemetry import KEY_PARKED

log = logging.getLogger(__name__)


class Turn(StrEnum):
    """Why a parked event's wait ended."""

    SCOUT = "scout"  #: it is this event's turn to try the key again
    USABLE = "usable"  #: the key worked again: try now
    EXPIRED = "expired"  #: its patience is over


@dataclass
class _Refused:
    """One unusable key: since when, how its retries stand, what the evidence says."""

    since: float
    next_try: float
    failures: int = 0  # failed scout rounds (the backoff's exponent)
    scout: object | None = None
    proven: bool = False


class KeyParking:
    def __init__(
        self,
        *,
        patience: float,
        capacity: int,
        retry_max: float,
        retry_initial: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.patience = patience
        self._capacity = capacity
        self._retry_initial = retry_initial
        self._retry_max = max(retry_max, retry_initial)
        self._clock = clock
        self._sleep = sleep
        self._keys: dict[str, _Refused] = {}
        self._parked: Counter[str] = Counter()
        self._changed = asyncio.Event()

    def parked(self, key: str | None = None) -> int:
        """Events parked now (for ``key``, or in all)."""
        return self._parked[key] if key is not None else self._parked.total()

    def is_refused(self, key: str) -> bool:
        return key in self._keys

    def park(self, key: str) -> bool:
        """One more event waits for ``key``; False when parking is full (it is not counted, and
        keeps its place in the consumer's window)."""
        if self._parked.total() >= self._capacity:
            return False
        self._parked[key] += 1
        KEY_PARKED.set(self._parked[key], {"key": key})
        return True

    def unpark(self, key: str) -> None:
        """A counted event is done (handled, dead-lettered or abandoned)."""
        self._parked[key] -= 1
        KEY_PARKED.set(max(self._parked[key], 0), {"key": key})
        if self._parked[key] <= 0:
            del self._parked[key]

    def refused(self, key: str, me: object, *, proven: bool, why: str) -> None:
        """A round under ``key`` failed because of the key. ``me``: the event; when it was the
        scout, its retry failed and the next one waits longer. ``proven``: the evidence says
        the refusal is the key's own (not the storage's KMS identity)."""
        now = self._clock()
        state = self._keys.get(key)
        if state is None:
            self._keys[key] = _Refused(since=now, next_try=now + self._delay(1), proven=proven)
            _log_refused(key, why, proven=proven, patience=self.patience)
            return
        if proven and not state.proven:
            state.proven = True
            log.warning("key %s: other keys work, so its refusal is its own (%s)", key, why)
        if state.scout is me:  # the retry failed: the next one waits longer
            state.failures += 1
            state.scout = None
            state.next_try = now + self._delay(state.failures + 1)
            self._notify()  # (only then: with thousands parked, a wake-up each is costly)

    def usable(self, key: str) -> None:
        """An event under ``key`` worked: every event parked for it tries again now."""
        state = self._keys.pop(key, None)
        if state is None:
            return
        log.warning(
            "key %s works again after %.1fs: its %d parked event(s) are tried now",
            key,
            self._clock() - state.since,
            self._parked[key],
        )
        self._notify()

    def release(self, key: str, me: object) -> None:
        """The scout's round ended without saying anything about the key (another failure, an
        outage, a cancellation): the next parked event may take its turn."""
        state = self._keys.get(key)
        if state is not None and state.scout is me:
            state.scout = None
            self._notify()

    async def wait_turn(self, key: str, deadline: float, me: object) -> Turn:
        """Wait, parked, until ``key`` is usable again, it is ``me``'s turn to try it, or the
        ``deadline`` (the clock's reading when ``me``'s patience ends)."""
        await asyncio.sleep(0)  # always a turn of the loop: never a busy loop of retries
        while (state := self._keys.get(key)) is not None:
            now = self._clock()
            if now >= deadline:
                return Turn.EXPIRED
            if state.scout is None and now >= state.next_try:
                state.scout = me
                return Turn.SCOUT
            until = deadline if state.scout is not None else min(deadline, state.next_try)
            await self._changed_within(until - now)
        return Turn.USABLE

    def _delay(self, failures: int) -> float:
        return backoff_delay(failures, self._retry_initial, self._retry_max)

    async def _changed_within(self, seconds: float) -> None:
        """Wait for a change (a refusal, a key usable again, a scout done) or ``seconds``."""
        waits = [asyncio.ensure_future(self._changed.wait()),
                 asyncio.ensure_future(self._sleep(max(seconds, 0.0)))]  # fmt: skip
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


def _log_refused(key: str, why: str, *, proven: bool, patience: float) -> None:
    """The one line when a key turns unusable, saying what the evidence shows."""
    if proven:
        evidence = "the key's own (the KMS says so, or other keys work)"
    else:
        evidence = (
            "not known yet whether the key or the storage's KMS identity is refused: no "
            "other key has been used since"
        )
    log.error(
        "key %s unusable (%s): %s. Its objects' events are parked and retried with backoff, "
        "dead-lettered after %gs; other keys are not affected",
        key,
        why,
        evidence,
        patience,
    )


def unusable_key(exc: EnforcerError, outcome: Outcome) -> tuple[str, str] | None:
    """The EK a failure shows unusable, and why: missing, disabled, or refused (to MinIO, or
    to us)."""
    if isinstance(exc, KeyMissing | KeyDisabled):
        return exc.key_name, exc.code
    if isinstance(exc, KmsNotAuthorized) and outcome.required is not None:
        return outcome.required.key, "not_authorized"
    return None
