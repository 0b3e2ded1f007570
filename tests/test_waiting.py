"""The tests' one waiting loop, :func:`waiting.eventually`: what it returns, and how it fails."""

from __future__ import annotations

import itertools

import pytest
from waiting import eventually


async def test_returns_the_first_value_that_satisfies_the_condition() -> None:
    counter = itertools.count()
    assert (
        await eventually(lambda: next(counter), "3", timeout=5, until=lambda n: n >= 3, every=0)
        == 3
    )


async def test_awaits_an_async_probe() -> None:
    calls: list[int] = []

    async def probe() -> list[int]:
        calls.append(1)
        return calls

    got = await eventually(probe, "two calls", timeout=5, until=lambda c: len(c) == 2, every=0)
    assert got == [1, 1]


async def test_a_true_value_is_enough_by_default() -> None:
    assert await eventually(lambda: "ready", "a value", timeout=1) == "ready"


async def test_timing_out_names_what_was_awaited_and_the_last_value() -> None:
    with pytest.raises(pytest.fail.Exception) as failed:
        await eventually(lambda: {"lag": 7}, "lag 0", timeout=0.05, every=0.01,
                         until=lambda v: v["lag"] == 0, context=lambda: "log tail")  # fmt: skip
    message = str(failed.value)
    assert message.startswith("timed out after 0.05s waiting for lag 0; last seen: {'lag': 7}")
    assert message.endswith("\nlog tail")


async def test_a_dead_process_fails_at_once() -> None:
    with pytest.raises(pytest.fail.Exception) as failed:
        await eventually(lambda: 0, "/readyz 200", timeout=60, alive=lambda: False,
                         show=lambda v: f"status {v}")  # fmt: skip
    assert str(failed.value) == (
        "the process under test exited while waiting for /readyz 200; last seen: status 0"
    )


async def test_the_last_value_is_shortened() -> None:
    with pytest.raises(pytest.fail.Exception) as failed:
        await eventually(lambda: list(range(10_000)), "nothing", timeout=0, until=lambda _: False)
    assert len(str(failed.value)) < 200
