"""KeyParking: one scout per key on a backoff schedule, everyone released when the key works,
patience, capacity."""

from __future__ import annotations

import asyncio
import logging

import pytest
from scrape import value

from enforcer.engine.parking import KeyParking, Turn


def parking(**kwargs: float) -> KeyParking:
    options = {"patience": 5.0, "capacity": 100, "retry_max": 0.05, "retry_initial": 0.01}
    return KeyParking(**(options | kwargs))  # type: ignore[arg-type]


class FakeTime:
    """A clock that moves only when someone sleeps (one waiter: its waits, exactly)."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def test_the_scout_waits_longer_after_each_failed_retry_up_to_the_maximum() -> None:
    time = FakeTime()
    lot = KeyParking(patience=1000, capacity=10, retry_initial=1, retry_max=8,
                     clock=time.clock, sleep=time.sleep)  # fmt: skip
    me = object()
    lot.refused("k", me, proven=True, why="refused")
    gaps = []
    for _ in range(6):
        before = time.now
        assert await lot.wait_turn("k", 1000, me) is Turn.SCOUT
        gaps.append(time.now - before)
        lot.refused("k", me, proven=True, why="refused again")  # the retry failed
    for gap, delay in zip(gaps, [1, 2, 4, 8, 8, 8], strict=True):
        assert delay / 2 <= gap <= delay, gaps  # half of each wait is jitter


async def test_one_scout_at_a_time() -> None:
    lot = parking()
    first, second = object(), object()
    for me in (first, second):
        lot.refused("k", me, proven=True, why="refused")
    deadline = asyncio.get_running_loop().time() + 5
    waits = [asyncio.create_task(lot.wait_turn("k", deadline, me)) for me in (first, second)]
    done, pending = await asyncio.wait(waits, timeout=1, return_when=asyncio.FIRST_COMPLETED)
    assert [t.result() for t in done] == [Turn.SCOUT]
    await asyncio.sleep(0.2)  # many retry intervals
    assert all(not t.done() for t in pending), "a second scout while the first one is out"
    scout = first if waits[0] in done else second
    lot.refused("k", scout, proven=True, why="refused again")
    [other] = pending
    assert await asyncio.wait_for(other, timeout=1) is Turn.SCOUT


async def test_the_key_working_again_releases_every_parked_event_at_once() -> None:
    lot = parking(retry_initial=10, retry_max=10)  # no scout within the test
    events = [object() for _ in range(5)]
    for me in events:
        lot.refused("k", me, proven=True, why="refused")
    deadline = asyncio.get_running_loop().time() + 30
    waits = [asyncio.create_task(lot.wait_turn("k", deadline, me)) for me in events]
    await asyncio.sleep(0.05)
    lot.usable("k")
    turns = await asyncio.wait_for(asyncio.gather(*waits), timeout=1)
    assert turns == [Turn.USABLE] * 5 and not lot.is_refused("k")


async def test_patience_ends_the_wait_and_other_keys_are_not_involved() -> None:
    lot = parking(retry_initial=10, retry_max=10)
    me, other = object(), object()
    lot.refused("k", me, proven=False, why="refused")
    loop = asyncio.get_running_loop()
    assert await lot.wait_turn("k", loop.time() + 0.05, me) is Turn.EXPIRED
    assert await lot.wait_turn("unrefused", loop.time() + 5, other) is Turn.USABLE


async def test_a_scout_that_ends_without_a_verdict_hands_the_turn_on() -> None:
    lot = parking(retry_initial=0.001)
    first, second = object(), object()
    lot.refused("k", first, proven=True, why="refused")
    deadline = asyncio.get_running_loop().time() + 5
    assert await lot.wait_turn("k", deadline, first) is Turn.SCOUT
    waiting = asyncio.create_task(lot.wait_turn("k", deadline, second))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    lot.release("k", second)  # not the scout: nothing happens
    await asyncio.sleep(0.01)
    assert not waiting.done()
    lot.release("k", first)
    assert await asyncio.wait_for(waiting, timeout=1) is Turn.SCOUT


async def test_capacity_counts_and_the_gauge_follows() -> None:
    lot = parking(capacity=2)
    assert lot.park("k") and lot.park("other")
    assert not lot.park("k"), "full: the event keeps its place in the window instead"
    assert value("enforcer_key_parked", key="k") == 1 and lot.parked() == 2
    lot.unpark("k")
    assert value("enforcer_key_parked", key="k") == 0 and lot.parked("k") == 0
    assert lot.park("k")


async def test_one_line_per_key_saying_what_the_evidence_shows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="enforcer.engine.parking")
    lot = parking()
    for _ in range(3):
        lot.refused("k", object(), proven=False, why="access_denied: refused")
    lot.refused("k", object(), proven=True, why="access_denied: refused")
    lot.refused("k", object(), proven=True, why="access_denied: refused")
    lot.refused("gone", object(), proven=True, why="key_missing: no such key")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "key k unusable (access_denied: refused): not known yet" in lines[0]
    assert "other keys work, so its refusal is its own" in lines[1]
    assert "key gone unusable (key_missing: no such key): the key's own" in lines[2]
    lot.usable("k")
    assert "key k works again" in caplog.records[-1].getMessage()
