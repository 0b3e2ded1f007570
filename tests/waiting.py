"""How tests wait: :func:`eventually` polls a probe until its value satisfies a condition, and
fails the test naming what it awaited and the last value it saw when a deadline passes first.

Tests wait on conditions (a readiness answer, an audit record, a log line, a metric), never on a
fixed sleep; this is the one loop that does the waiting.
"""

from __future__ import annotations

import asyncio
import inspect
import reprlib
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar, overload

import pytest

T = TypeVar("T")

_SHOW = reprlib.Repr()
_SHOW.maxstring, _SHOW.maxother, _SHOW.maxlist, _SHOW.maxdict = 300, 300, 8, 8


def _always() -> bool:
    return True


def _nothing() -> str:
    return ""


@overload
async def eventually(
    probe: Callable[[], Awaitable[T]],
    what: str,
    *,
    timeout: float,  # noqa: ASYNC109
    until: Callable[[T], object] = ...,
    every: float = ...,
    alive: Callable[[], bool] = ...,
    show: Callable[[T], object] | None = ...,
    context: Callable[[], str] = ...,
) -> T: ...


@overload
async def eventually(
    probe: Callable[[], T],
    what: str,
    *,
    timeout: float,  # noqa: ASYNC109
    until: Callable[[T], object] = ...,
    every: float = ...,
    alive: Callable[[], bool] = ...,
    show: Callable[[T], object] | None = ...,
    context: Callable[[], str] = ...,
) -> T: ...


async def eventually(
    probe: Callable[[], Any],
    what: str,
    *,
    timeout: float,  # noqa: ASYNC109 - a deadline for polling, reported with the last value
    until: Callable[[Any], object] = bool,
    every: float = 0.2,
    alive: Callable[[], bool] = _always,
    show: Callable[[Any], object] | None = None,
    context: Callable[[], str] = _nothing,
) -> Any:
    """Call ``probe()`` (plain or async) every ``every`` seconds until ``until(value)`` is true,
    and return that value.

    Fails the test when ``timeout`` seconds pass first, or at once when ``alive()`` turns false
    (the process under test exited): the message names ``what`` was awaited and the last value
    (``show(value)`` if given, else a shortened repr), followed by ``context()`` (a log tail).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = probe()
        value = await result if inspect.isawaitable(result) else result
        if until(value):
            return value
        if not alive():
            _fail(f"the process under test exited while waiting for {what}", value, show, context)
        if loop.time() >= deadline:
            _fail(f"timed out after {timeout}s waiting for {what}", value, show, context)
        await asyncio.sleep(every)  # the polling period, not a wait for an outcome


def _fail(
    headline: str, value: Any, show: Callable[[Any], object] | None, context: Callable[[], str]
) -> NoReturn:
    last = show(value) if show is not None else _SHOW.repr(value)
    extra = context()
    pytest.fail(f"{headline}; last seen: {last}" + (f"\n{extra}" if extra else ""))
