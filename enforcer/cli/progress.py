"""A small progress display for long commands, on stderr.

On a terminal one line is redrawn in place (at most ten times a second): objects done, rate,
elapsed time and, when the total is known, a bar and the ETA. When stderr is not a terminal
(a CI log, a file, ``kubectl logs``) a plain line is written every ``interval`` seconds instead,
so logs stay readable. Rendering is pure (:func:`render`); :class:`Progress` only decides when.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

#: Seconds between redraws on a terminal.
TTY_REFRESH = 0.1
BAR_WIDTH = 24


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def render(done: int, elapsed: float, total: int | None, *, label: str, bar: bool) -> str:
    """One progress line (pure): ``label 12,345/100,000 [####    ] 1,234/s 0:00:10 ETA 0:01:12``."""
    rate = done / elapsed if elapsed > 0 else 0.0
    parts = [label, f"{done:,}" + (f"/{total:,}" if total else "") + " objects"]
    if total and bar:
        filled = min(BAR_WIDTH, BAR_WIDTH * done // total)
        parts.append("[" + "#" * filled + " " * (BAR_WIDTH - filled) + "]")
    parts += [f"{rate:,.0f}/s", f"elapsed {_duration(elapsed)}"]
    if total and rate > 0:
        parts.append(f"ETA {_duration(max(0, total - done) / rate)}")
    elif not total:
        parts.append("ETA -")
    return "  ".join(parts)


class Progress:
    """Call :meth:`update` as work finishes; :meth:`close` writes the final state."""

    def __init__(
        self,
        stream: TextIO,
        *,
        label: str = "scan",
        total: int | None = None,
        interval: float = 10.0,
        interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._label = label
        self.total = total
        self._interactive = stream.isatty() if interactive is None else interactive
        self._interval = TTY_REFRESH if self._interactive else interval
        self._clock = clock
        self._started = clock()
        self._last = self._started
        self._done = 0

    def update(self, done: int) -> None:
        self._done = done
        now = self._clock()
        if now - self._last >= self._interval:
            self._last = now
            self._draw(now)

    def close(self) -> None:
        self._draw(self._clock())
        if self._interactive:
            self._stream.write("\n")
        self._stream.flush()

    def _draw(self, now: float) -> None:
        line = render(self._done, now - self._started, self.total, label=self._label,
                      bar=self._interactive)  # fmt: skip
        if self._interactive:
            self._stream.write("\r\x1b[2K" + line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
