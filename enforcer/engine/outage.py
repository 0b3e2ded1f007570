"""Riding out storage, KMS and credential outages without failing events.

A circuit breaker that knows *which* dependency failed (docs/architecture.md, failure model).
After ``threshold`` failures of one dependency in a row — or at once when that dependency's probe
fails too, or when it refuses the enforcer's identity — the gate opens: the consumer pauses its
partitions, readiness turns 503, and handlers wait. While open, every ``probe_interval`` the
gate probes each dependency that is down with that dependency's own probe (storage: a signed S3
request; KMS: the KMS's status call); a dependency without a probe passes at once. When every
probe passes the gate is half-open: exactly one waiting event runs as the trial, the one that has
waited longest, so an event that keeps failing for reasons of its own (a key the KMS refuses
MinIO) cannot take every trial from the others. The gate closes only when an event *succeeds at
using* every dependency that was down — a probe alone never closes it, so a KMS that answers the
enforcer but not MinIO keeps the gate open instead of letting it flap — and a failed trial opens
it again without a new log line.

Logging is bounded: one line when the gate opens, one when it closes, and at most one "still
paused" line per ``log_interval`` in between.

The gate also owns the rules that tell an outage from one bad event, behind its own API:
:meth:`OutageGate.mark` notes where the counts of real handling successes stand (never
probes) when an event starts, :meth:`OutageGate.is_poison` says when an event that keeps failing
while the same dependency served others is not in an outage at all, and
:meth:`OutageGate.blame` says whether a refusal is about one object, one key, or about us.

A refused key and a KMS that refuses the storage every key look the same in one event (403
``kms:NotAuthorized``); the gate tells them apart from evidence, never by guessing: the refusal
is the key's own when the KMS served any other event since the refused one started (another key
works), or when the KMS says the key is missing or disabled; it is about us — a credentials
pause — when the KMS's own status call fails or refuses the enforcer. Otherwise it is not known
yet: the guard parks the key's events (they hold nothing, so consumption goes on and the events
of other keys can show the KMS serving the storage), and when an event's patience ends with no
key having worked since it started, hands it back here as the KMS refusing the storage — a
pause, never a dead letter on a guess. (Pausing on a guess, say on a second key refused, would
stop the very events that could prove it wrong.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum

from enforcer.engine.outcome import Dependency
from enforcer.errors import (
    AccessDenied,
    CredentialsRejected,
    EnforcerError,
    KeyDisabled,
    KeyMissing,
    KmsNotAuthorized,
    KmsUnavailable,
    StorageUnavailable,
)
from enforcer.telemetry import CREDENTIAL_ALERTS, OUTAGE_PAUSES

log = logging.getLogger(__name__)


#: Asks one dependency whether it is back; raises (any error) while it is not.
Probe = Callable[[], Awaitable[None]]

#: An event failing with an outage-class error this many rounds while its dependency served
#: this many other events is not in an outage: it is dead-lettered as ``poison_event``.
POISON_ROUNDS = 5
POISON_OTHERS = 5


class Blame(StrEnum):
    """Whose a permanent failure is, as far as the evidence goes (an outage aside)."""

    EVENT = "event"  #: the event's own: dead-letter it
    KEY = "key"  #: its key's: missing or disabled, or refused while other keys work
    KEY_UNPROVEN = "key_unproven"  #: its key refused, and nothing else has used the KMS since


@dataclass(frozen=True)
class Mark:
    """Where the counts of real handling successes stood when an event started."""

    successes: Mapping[Dependency, int]


def dependency_of(exc: BaseException) -> Dependency | None:
    """The dependency an outage-class error blames, or None when it is not one."""
    if isinstance(exc, KmsUnavailable | KmsNotAuthorized):
        return Dependency.KMS
    if isinstance(exc, StorageUnavailable | CredentialsRejected):
        return Dependency.STORAGE
    return None


def is_credentials_problem(exc: BaseException) -> bool:
    return isinstance(exc, CredentialsRejected | KmsNotAuthorized)


class OutageGate:
    def __init__(
        self,
        *,
        threshold: int,
        probe_interval: float,
        probes: Mapping[Dependency, Probe] | None = None,
        log_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``clock`` reads the time for the log lines; ``sleep`` waits out a probe interval
        (tests drive both by hand)."""
        self._threshold = threshold
        self._probe_interval = probe_interval
        self._probes = dict(probes or {})
        self._log_interval = log_interval
        self._clock = clock
        self._sleep = sleep
        self._failures: Counter[Dependency] = Counter()
        self._successes: Counter[Dependency] = Counter()  # real handling, never probes
        self._down: dict[Dependency, str] = {}  # dependency -> last reason
        self._credentials = False
        self._half_open = False
        self._trial_running = False
        self._opened_at = 0.0
        self._last_log = 0.0
        self._changed = asyncio.Event()
        self._probing = asyncio.Lock()
        self._waiting: deque[object] = deque()  # callers of admitted(), longest-waiting first
        self._refused_keys: set[str] = set()  # refused since the KMS last served an event

    @property
    def is_open(self) -> bool:
        """Open or half-open: consumption stays paused and readiness says not ready."""
        return bool(self._down)

    def describe(self) -> str:
        """One line for readiness: why consumption is paused."""
        return f"paused: {self._what()}" if self._down else "consuming"

    def mark(self) -> Mark:
        """Note where the success counts stand, for :meth:`served_since` and the poison rule."""
        return Mark(dict(self._successes))

    def served_since(self, mark: Mark, dependency: Dependency) -> int:
        """Real handling successes with ``dependency`` since ``mark`` (probes never count)."""
        return self._successes[dependency] - mark.successes.get(dependency, 0)

    def is_poison(self, mark: Mark, dependency: Dependency, rounds: int) -> bool:
        """An event that failed ``rounds`` times on ``dependency`` while it served enough other
        events since ``mark`` is not in an outage: it is one bad event."""
        served = self.served_since(mark, dependency)
        return rounds >= POISON_ROUNDS and served >= POISON_OTHERS

    async def blame(
        self, exc: EnforcerError, mark: Mark, key: str | None = None
    ) -> Blame | EnforcerError:
        """Is a permanent failure about this object, its key ``key``, or about us? Returns the
        outage to wait out, or whose failure it is. S3's AccessDenied: ask the storage probe (a
        signed request that must work for a valid identity). A key the KMS says is missing or
        disabled: the key's. The KMS refusing a key: see :meth:`_blame_refusal`."""
        if isinstance(exc, KeyMissing | KeyDisabled):
            return Blame.KEY
        if isinstance(exc, KmsNotAuthorized):
            return await self._blame_refusal(exc, mark, key)
        if isinstance(exc, AccessDenied):
            return await self.diagnose(Dependency.STORAGE) or Blame.EVENT
        return Blame.EVENT

    async def _blame_refusal(
        self, exc: KmsNotAuthorized, mark: Mark, key: str | None
    ) -> Blame | EnforcerError:
        """The key's own when the KMS served any other event since ``mark`` (another key
        works). About us (a credentials pause) when the KMS's status call fails or refuses us
        (asked once per key newly refused since the KMS last served an event). Otherwise not
        known yet."""
        if self.served_since(mark, Dependency.KMS) > 0:
            return Blame.KEY
        if key is None:
            return exc
        new = key not in self._refused_keys
        self._refused_keys.add(key)
        if new and (down := await self.diagnose(Dependency.KMS)) is not None:
            return down
        return Blame.KEY_UNPROVEN

    async def report_outage(self, exc: EnforcerError) -> Dependency:
        """A handling round failed with an outage-class error: record it against the dependency
        it blames, confirmed at once when that dependency's own probe fails too."""
        dependency = dependency_of(exc)
        assert dependency is not None, f"not an outage-class error: {exc!r}"
        confirmed = not self.is_open and await self.diagnose(dependency) is not None
        self.record_failure(dependency, exc, confirmed=confirmed)
        return dependency

    def _what(self) -> str:
        kind = "credentials refused by" if self._credentials else "outage of"
        what = ", ".join(f"{d.value} ({r})" for d, r in sorted(self._down.items()))
        return f"{kind} {what}"

    def record_failure(
        self,
        dependency: Dependency,
        exc: EnforcerError,
        *,
        confirmed: bool = False,
        detail: str | None = None,
    ) -> None:
        """A handling round failed because ``dependency`` is down (or refuses us). ``confirmed``:
        the dependency's own probe failed too (or other evidence says so: ``detail``), so there
        is no need to wait for the threshold."""
        self._failures[dependency] += 1
        self._trial_running = False
        reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        credentials = is_credentials_problem(exc)
        if self.is_open:
            if dependency in self._down or self._failures[dependency] >= self._threshold:
                self._down[dependency] = reason
            self._credentials = self._credentials or credentials
            self._half_open = False  # a failed trial: back to probing, no new log line
            self._log_still_down()
            self._notify()
            return
        at_once = confirmed or isinstance(exc, CredentialsRejected)  # the identity check failed
        if at_once or self._failures[dependency] >= self._threshold:
            self._open(dependency, reason, credentials=credentials)

    def record_success(self, used: Iterable[Dependency]) -> None:
        """A handling round succeeded (or was refused for its own reasons) using ``used``."""
        used = set(used)
        for dependency in used:
            self._successes[dependency] += 1
            self._failures[dependency] = 0
        if Dependency.KMS in used:
            self._refused_keys.clear()
        self._trial_running = False
        if self._down and used >= self._down.keys():  # a real success, trial or in flight
            self._close()
        self._notify()

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Wait until this caller may handle its event: the gate is closed, or it is the trial.
        A trial that ends without a verdict (cancelled) hands the turn on."""
        trial = await self._wait_turn()
        try:
            yield
        finally:
            if trial and self._trial_running:
                self._trial_running = False
                self._notify()

    async def diagnose(self, dependency: Dependency) -> EnforcerError | None:
        """Run ``dependency``'s probe now: the error it raised, or None when it answered."""
        probe = self._probes.get(dependency)
        if probe is None:
            return None
        try:
            await probe()
        except EnforcerError as exc:
            return exc
        return None

    async def _wait_turn(self) -> bool:
        if not self._down:
            return False
        me = object()
        self._waiting.append(me)
        try:
            while self._down:
                if self._half_open and not self._trial_running and self._waiting[0] is me:
                    self._trial_running = True
                    return True
                changed = self._changed
                if not self._half_open and not self._probing.locked():
                    async with self._probing:
                        await self._probe_once(changed)
                    continue
                await self._changed_within_interval(changed)
            return False
        finally:
            self._waiting.remove(me)
            if self._half_open and not self._trial_running:
                self._notify()  # left without the trial (cancelled): the next in line takes it

    async def _changed_within_interval(self, changed: asyncio.Event) -> bool:
        """Wait for ``changed`` for at most one probe interval; True when it was set. A
        cancellation always propagates (on Python 3.11 ``wait_for`` could swallow one that
        arrives as the event is set, and a shutdown would wait on this loop)."""
        waits = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(
            self._sleep(self._probe_interval))]  # fmt: skip
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return changed.is_set()

    async def _probe_once(self, changed: asyncio.Event) -> None:
        if await self._changed_within_interval(changed):
            return  # something happened (a success, a failure): look again first
        failing = [d for d in list(self._down) if await self.diagnose(d) is not None]
        if not self._down:
            return
        if failing:
            self._log_still_down()
            return
        self._half_open = True
        self._notify()

    def _open(self, dependency: Dependency, reason: str, *, credentials: bool) -> None:
        self._down[dependency] = reason
        self._credentials = credentials
        self._half_open = False
        self._opened_at = self._last_log = self._clock()
        OUTAGE_PAUSES.add(1, {"dependency": dependency.value})
        if credentials:
            CREDENTIAL_ALERTS.add(1, {"dependency": dependency.value})
        log.error(
            "%s: pausing consumption, probing every %.1fs",
            self._what(),
            self._probe_interval,
        )
        self._notify()

    def _close(self) -> None:
        down = self._clock() - self._opened_at
        what = ", ".join(sorted(d.value for d in self._down))
        self._down.clear()
        self._credentials = self._half_open = False
        log.warning("dependency back (%s) after %.1fs: resuming consumption", what, down)

    def _log_still_down(self) -> None:
        now = self._clock()
        if now - self._last_log >= self._log_interval:
            self._last_log = now
            log.warning("still paused after %.0fs: %s", now - self._opened_at, self._what())

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
