"""Log lines on stderr: JSON (one object per line, for log pipelines) or text (for a terminal),
and the rate limit that keeps the Kafka client's reconnect noise bounded.

``ENFORCER_LOG_FORMAT`` picks the format and ``ENFORCER_LOG_LEVEL`` (or ``--log-level``) the
level. A JSON line carries ``time``, ``level``, ``logger``, ``message``, the ``trace_id`` and
``span_id`` of the OpenTelemetry span current when the line was logged (so a log line leads to
its trace), ``exception`` when there is one, and the fields a call passes with ``extra=``
(``bucket``, ``key``, ``verdict``, ...). Callers log names and verdicts, never key material.

While a broker restarts, aiokafka logs every failed connection attempt of every client, several
times a second, mostly at ERROR (hundreds of lines for an 8-second restart). The first line of
each kind says all there is to say; :class:`RateLimit` lets one line of each kind (logger and
message template) through per window and appends how many similar lines it held back.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from opentelemetry import trace

LogFormat = Literal["json", "text"]

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

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


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the current span's trace and span ids."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            line["trace_id"] = format(context.trace_id, "032x")
            line["span_id"] = format(context.span_id, "016x")
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                line.setdefault(name, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(
    level: str = "INFO", log_format: LogFormat = "json", stream: TextIO | None = None
) -> None:
    """One handler for the process on ``stream`` (stderr) in ``log_format``, with the Kafka
    client's noise rate-limited; replaces earlier setup."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    text = logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(JsonFormatter() if log_format == "json" else text)
    handler.addFilter(RateLimit())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


@contextmanager
def muted(*names: str) -> Iterator[None]:
    """Silence the loggers ``names`` for the block: for one-shot commands whose own error line
    already says what the client library would log (``enforcer status`` with Kafka down)."""
    loggers = [logging.getLogger(name) for name in names]
    before = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled in zip(loggers, before, strict=True):
            logger.disabled = disabled
