"""Time that a test moves by hand: a clock to read and a sleep that ends when time has come."""

from __future__ import annotations

import asyncio


class ManualTime:
    """``clock`` and ``sleep`` for code that takes them injected (the outage gate): nothing
    happens by the wall clock; :meth:`advance` ends every sleep that is due."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self.now + seconds, woken)
        self._sleepers.append(entry)
        try:
            await woken
        finally:
            self._sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for due, woken in self._sleepers:
            if due <= self.now and not woken.done():
                woken.set_result(None)


async def settle(turns: int = 20) -> None:
    """Let every task that can run, run (event-loop turns, no wall-clock time)."""
    for _ in range(turns):
        await asyncio.sleep(0)
