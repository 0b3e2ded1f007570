"""Logging set-up, and the rate limit that keeps the Kafka client's reconnect noise bounded.

While a broker restarts, aiokafka logs every failed connection attempt of every client, several
times a second, mostly at ERROR (hundreds of lines for an 8-second restart). The first line of
each kind says all there is to say; :class:`RateLimit` lets one line of each kind (logger and
message template) through per window and appends how many similar lines it held back.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Loggers whose repeated warnings and errors are rate-limited.
NOISY_LOGGERS = ("aiokafka", "kafka")
WINDOW_SECONDS = 30.0
_DIGITS = re.compile(r"\d+")


@dataclass
class _Kind:
    window_start: float
    suppressed: int = 0


class RateLimit(logging.Filter):
    """Per (logger, message template): the first record of a window passes, the rest are counted;
    the first one after the window says how many were held back. Records below WARNING and
    records of other loggers pass untouched."""

    def __init__(
        self,
        prefixes: tuple[str, ...] = NOISY_LOGGERS,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._prefixes = prefixes
        self._window = window
        self._clock = clock
        self._kinds: dict[tuple[str, str], _Kind] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not self._is_noisy(record.name):
            return True
        now = self._clock()
        kind = self._kinds.get(key := _kind_of(record))
        if kind is not None and now - kind.window_start < self._window:
            kind.suppressed += 1
            return False
        if kind is not None and kind.suppressed:
            record.msg = f"{record.getMessage()} ({kind.suppressed} similar held back " \
                         f"in the last {self._window:.0f} s)"  # fmt: skip
            record.args = None
        self._kinds[key] = _Kind(window_start=now)
        return True

    def _is_noisy(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self._prefixes)


def _kind_of(record: logging.LogRecord) -> tuple[str, str]:
    template = str(record.msg)
    if not record.args:  # already formatted: numbers (ids, ports, counts) do not make a new kind
        template = _DIGITS.sub("#", template)
    return record.name, template[:200]


def configure_logging(level: str) -> None:
    """One stderr handler for the process, with the Kafka client's noise rate-limited."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RateLimit())
    logging.basicConfig(level=level.upper(), handlers=[handler])
