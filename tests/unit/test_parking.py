"""KeyParking: one scout per key on a backoff schedule, everyone released when the key works,
patience, capacity."""

from __future__ import annotations

import asyncio
import logging

import pytest
from doubles.time import ManualTime, settle
from scrape import value

from enforcer.engine.parking import KeyParking, Turn


def parking(time: ManualTime | None = None, **kwargs: float) -> KeyParking:
    options = {"patience": 5.0, "capacity": 100, "retry_max": 0.05, "retry_initial": 0.01}
    clock = {"clock": time.clock, "sleep": time.sleep} if time is not None else {}
    return KeyParking(**(options | kwargs), **clock)  # type: ignore[arg-type]


async def moved_until_done(time: ManualTime, task: asyncio.Task[Turn], step: float) -> Turn:
    """Advance ``time`` by ``step`` until ``task`` has ended; its result."""
    await settle()
    while not task.done():
        time.advance(step)
        await settle()
    return task.result()


async def test_the_scout_waits_longer_after_each_failed_retry_up_to_the_maximum() -> None:
    time = ManualTime()
    lot = parking(time, patience=1000, capacity=10, retry_initial=1, retry_max=8)
    me = object()
    lot.refused("k", me, proven=True, why="refused")
    gaps = []
    for _ in range(6):
        before = time.now
        turn = asyncio.create_task(lot.wait_turn("k", 1000, me))
        # 0.25 divides every delay (1, 2, 4, 8): no gap is rounded up past its delay
        assert await moved_until_done(time, turn, step=0.25) is Turn.SCOUT
        gaps.append(time.now - before)
        lot.refused("k", me, proven=True, why="refused again")  # the retry failed
    for gap, delay in zip(gaps, [1, 2, 4, 8, 8, 8], strict=True):
        assert delay / 2 <= gap <= delay, gaps  # half of each wait is jitter


async def test_one_scout_at_a_time() -> None:
    time = ManualTime()
    lot = parking(time)
    first, second = object(), object()
    for me in (first, second):
        lot.refused("k", me, proven=True, why="refused")
    deadline = time.now + 5
    waits = [asyncio.create_task(lot.wait_turn("k", deadline, me)) for me in (first, second)]
    await settle()
    time.advance(0.01)  # the first retry is due (retry_initial)
    await settle()
    done = {t for t in waits if t.done()}
    pending = {t for t in waits if not t.done()}
    assert [t.result() for t in done] == [Turn.SCOUT]
    for _ in range(20):  # many retry intervals
        time.advance(0.01)
        await settle()
    assert all(not t.done() for t in pending), "a second scout while the first one is out"
    scout = first if waits[0] in done else second
    lot.refused("k", scout, proven=True, why="refused again")
    [other] = pending
    assert await moved_until_done(time, other, step=0.01) is Turn.SCOUT


async def test_the_key_working_again_releases_every_parked_event_at_once() -> None:
    lot = parking(retry_initial=10, retry_max=10)  # no scout within the test
    events = [object() for _ in range(5)]
    for me in events:
        lot.refused("k", me, proven=True, why="refused")
    deadline = asyncio.get_running_loop().time() + 30
    waits = [asyncio.create_task(lot.wait_turn("k", deadline, me)) for me in events]
    await settle()  # all of them waiting
    lot.usable("k")
    turns = await asyncio.wait_for(asyncio.gather(*waits), timeout=1)
    assert turns == [Turn.USABLE] * 5 and not lot.is_refused("k")


async def test_patience_ends_the_wait_and_other_keys_are_not_involved() -> None:
    time = ManualTime()
    lot = parking(time, retry_initial=10, retry_max=10)
    me, other = object(), object()
    lot.refused("k", me, proven=False, why="refused")
    waiting = asyncio.create_task(lot.wait_turn("k", time.now + 0.05, me))
    await settle()
    time.advance(0.05)
    assert await asyncio.wait_for(waiting, timeout=1) is Turn.EXPIRED
    assert await lot.wait_turn("unrefused", time.now + 5, other) is Turn.USABLE


async def test_a_scout_that_ends_without_a_verdict_hands_the_turn_on() -> None:
    time = ManualTime()
    lot = parking(time, retry_initial=0.001)
    first, second = object(), object()
    lot.refused("k", first, proven=True, why="refused")
    deadline = time.now + 5
    scout = asyncio.create_task(lot.wait_turn("k", deadline, first))
    assert await moved_until_done(time, scout, step=0.001) is Turn.SCOUT
    waiting = asyncio.create_task(lot.wait_turn("k", deadline, second))
    await settle()
    assert not waiting.done()
    lot.release("k", second)  # not the scout: nothing happens
    await settle()
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
