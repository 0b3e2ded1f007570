"""One message's records: concurrent across objects, in order per object, bounded."""

import asyncio
from dataclasses import dataclass

import pytest

from enforcer.engine.fanout import chains_of, run_per_object


@dataclass(frozen=True)
class Item:
    bucket: str
    key: str
    n: int


def test_chains_keep_each_objects_order() -> None:
    items = [Item("b", "x", 0), Item("b", "y", 1), Item("b", "x", 2), Item("c", "x", 3)]
    assert [[i.n for i in c] for c in chains_of(items)] == [[0, 2], [1], [3]]


async def test_objects_run_concurrently_up_to_the_limit_and_in_order_per_object() -> None:
    items = [Item("b", f"k{i % 50}", i) for i in range(500)]
    running, peak, seen = 0, 0, []

    async def handle(item: Item) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        seen.append(item)
        running -= 1

    await run_per_object(items, handle, limit=8)
    assert peak == 8
    assert len(seen) == 500
    for key in {i.key for i in items}:
        assert [i.n for i in seen if i.key == key] == [i.n for i in items if i.key == key]


async def test_the_first_failure_is_raised_as_itself_and_stops_the_rest() -> None:
    never = asyncio.Event()  # the others would wait for ever: only cancelling them ends the run
    started: list[int] = []

    async def handle(item: Item) -> None:
        started.append(item.n)
        if item.n == 3:
            raise LookupError("boom")
        await never.wait()

    items = [Item("b", f"k{i}", i) for i in range(100)]
    with pytest.raises(LookupError, match="boom"):
        await asyncio.wait_for(run_per_object(items, handle, limit=4), timeout=2)
    assert 3 in started and len(started) < 100
