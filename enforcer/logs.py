"""Log lines on stderr: JSON (one object per line, for log pipelines) or text (for a terminal).

``ENFORCER_LOG_FORMAT`` picks the format and ``ENFORCER_LOG_LEVEL`` (or ``--log-level``) the
level. A JSON line carries ``time``, ``level``, ``logger``, ``message``, the ``trace_id`` and
``span_id`` of the OpenTelemetry span current when the line was logged (so a log line leads to
its trace), ``exception`` when there is one, and the fields a call passes with ``extra=``
(``bucket``, ``key``, ``verdict``, ...). Callers log names and verdicts, never key material.
"""

from __future__ import annotations

import json
import logging
import sys
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
    """Send every log record to ``stream`` (stderr) in ``log_format``; replaces earlier setup."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    text = logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(JsonFormatter() if log_format == "json" else text)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
