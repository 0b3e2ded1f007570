"""One message's records, handled with bounded concurrency while each object's stay in order.

A notification message may carry thousands of records. Handled one after another they hold the
message's partition for as long as all of them take; handled all at once they would swamp the
store. Records naming the same object form a chain handled in order; chains run concurrently, at
most ``limit`` at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, TypeVar


class _Named(Protocol):
    @property
    def bucket(self) -> str: ...

    @property
    def key(self) -> str: ...


T = TypeVar("T", bound=_Named)


def chains_of(items: Iterable[T]) -> list[list[T]]:
    """Items grouped by object (bucket, key), each group in its original order (pure)."""
    chains: dict[tuple[str, str], list[T]] = {}
    for item in items:
        chains.setdefault((item.bucket, item.key), []).append(item)
    return list(chains.values())


async def run_per_object(
    items: Iterable[T], handle: Callable[[T], Awaitable[None]], limit: int
) -> None:
    """``handle`` every item; one object's items in order, at most ``limit`` objects at once.

    The first failure cancels the rest and is raised as itself (the caller treats the whole
    message as not done, so it is handled again).
    """
    chains = chains_of(items)
    if len(chains) <= 1 or limit <= 1:
        for chain in chains:
            for item in chain:
                await handle(item)
        return
    slots = asyncio.Semaphore(limit)

    async def run_chain(chain: list[T]) -> None:
        async with slots:
            for item in chain:
                await handle(item)

    try:
        async with asyncio.TaskGroup() as group:
            for chain in chains:
                group.create_task(run_chain(chain))
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None
