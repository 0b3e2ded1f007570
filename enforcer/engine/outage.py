"""Riding out KMS and storage outages without failing events (docs/architecture.md).

A circuit breaker: after ``threshold`` consecutive dependency failures the gate opens, the
consumer pauses its partitions, and handlers wait. Every ``probe_interval`` the gate probes: with
a probe function (e.g. KES ``/v1/status``) it asks that; without one, it lets exactly one waiting
event through as the probe (half-open). Success closes the gate. Opening and closing are logged
once each, so an outage of an hour is two log lines, not thousands.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from enforcer.telemetry import KMS_PAUSES

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[bool]]


class OutageGate:
    def __init__(
        self, *, threshold: int, probe_interval: float, probe: Probe | None = None
    ) -> None:
        self._threshold = threshold
        self._probe_interval = probe_interval
        self._probe = probe
        self._failures = 0
        self.successes = 0  # ever; lets a handler tell an outage from one bad object
        self._opened_at: float | None = None
        self._closed = asyncio.Event()
        self._closed.set()
        self._trial = asyncio.Lock()

    @property
    def is_open(self) -> bool:
        return not self._closed.is_set()

    def record_failure(self, reason: str) -> None:
        self._failures += 1
        if self._failures >= self._threshold and not self.is_open:
            self._opened_at = time.monotonic()
            self._closed.clear()
            KMS_PAUSES.add(1)
            log.error(
                "dependency outage (%s): pausing consumption, probing every %.1fs",
                reason,
                self._probe_interval,
            )

    def record_success(self) -> None:
        self.successes += 1
        self._failures = 0
        if self.is_open:
            down = time.monotonic() - (self._opened_at or time.monotonic())
            log.warning("dependency back after %.1fs: resuming consumption", down)
            self._closed.set()

    async def wait_until_closed(self) -> None:
        """Return when the caller may try its event: the gate is closed, or it is the probe."""
        while self.is_open:
            if self._probe is None and not self._trial.locked():
                async with self._trial:
                    await asyncio.sleep(self._probe_interval)
                    if self.is_open:
                        return  # half-open: this caller's attempt is the probe
                continue
            try:
                await asyncio.wait_for(self._closed.wait(), timeout=self._probe_interval)
            except TimeoutError:
                if self._probe is not None and await self._safe_probe():
                    self.record_success()

    async def _safe_probe(self) -> bool:
        assert self._probe is not None
        try:
            return await self._probe()
        except Exception:  # noqa: BLE001 - a failing probe just means "still down"
            return False
