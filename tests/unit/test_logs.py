"""Log lines: JSON with the current span's ids, extras and exceptions; text for terminals; the
rate limit on the Kafka client's repeated warnings and errors."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from enforcer.config import load_settings
from enforcer.errors import ConfigError
from enforcer.logs import JsonFormatter, RateLimit, configure_logging
from enforcer.telemetry import TRACER


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("enforcer.x", logging.WARNING, __file__, 1, message, args, None)
    for name, value in extra.items():
        setattr(made, name, value)
    return made


def test_json_line_has_level_logger_message_and_extras() -> None:
    line = json.loads(JsonFormatter().format(record("hello %s", "world", bucket="b", key="k")))
    assert {k: line[k] for k in ("level", "logger", "message", "bucket", "key")} == {
        "level": "WARNING",
        "logger": "enforcer.x",
        "message": "hello world",
        "bucket": "b",
        "key": "k",
    }
    assert line["time"].endswith("+00:00")
    assert "trace_id" not in line and "span_id" not in line  # no span, no ids


def test_json_line_carries_the_current_span_ids() -> None:
    with TRACER.start_as_current_span("event") as span:
        line = json.loads(JsonFormatter().format(record()))
    context = span.get_span_context()
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")


def test_json_line_keeps_the_exception_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        made = record()
        made.exc_info = sys.exc_info()
    text = JsonFormatter().format(made)
    assert "\n" not in text
    assert "ValueError: boom" in json.loads(text)["exception"]


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(("log_format", "is_json"), [("json", True), ("text", False)])
def test_configure_logging_picks_format_and_level(log_format: str, is_json: bool) -> None:
    stream = io.StringIO()
    configure_logging("warning", log_format, stream=stream)  # type: ignore[arg-type]
    logging.getLogger("enforcer.t").info("dropped")
    logging.getLogger("enforcer.t").warning("kept")
    [line] = stream.getvalue().splitlines()
    assert line.startswith("{") is is_json and "kept" in line


def test_log_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENFORCER_LOG_LEVEL", "debug")
    monkeypatch.setenv("ENFORCER_LOG_FORMAT", "text")
    settings = load_settings()
    assert (settings.log_level, settings.log_format) == ("DEBUG", "text")
    monkeypatch.setenv("ENFORCER_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="ENFORCER_LOG_FORMAT"):
        load_settings()


@pytest.mark.usefixtures("restore_logging")
def test_the_log_level_flag_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from enforcer.cli import main
    from enforcer.cli.args import EXIT_USAGE

    monkeypatch.setenv("ENFORCER_LOG_LEVEL", "ERROR")
    monkeypatch.setenv("ENFORCER_LOG_FORMAT", "text")
    # keys status without a KMS stops with a usage error right after the settings are read
    assert main(["--log-level", "debug", "keys", "status"]) == EXIT_USAGE
    [handler] = logging.getLogger().handlers
    assert logging.getLogger().level == logging.DEBUG
    assert not isinstance(handler.formatter, JsonFormatter)
    monkeypatch.setenv("ENFORCER_LOG_FORMAT", "json")
    assert main(["keys", "status"]) == EXIT_USAGE
    [handler] = logging.getLogger().handlers
    assert logging.getLogger().level == logging.ERROR
    assert isinstance(handler.formatter, JsonFormatter)


def kafka_record(
    name: str, msg: str, *args: object, level: int = logging.ERROR
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_one_line_per_kind_per_window_then_a_count() -> None:
    now = [0.0]
    limit = RateLimit(window=30.0, clock=lambda: now[0])
    passed = []
    for second in range(60):  # two windows of a node that keeps refusing, 10 attempts a second
        now[0] = float(second)
        for node in range(10):
            entry = kafka_record(
                "aiokafka.conn", "Unable connect to node with id %s: %s", node, "refused"
            )
            if limit.filter(entry):
                passed.append(entry.getMessage())
    assert len(passed) == 2
    assert passed[1].endswith("(299 similar held back in the last 30 s)")


def test_kinds_are_counted_apart_and_other_loggers_and_levels_pass() -> None:
    limit = RateLimit(window=30.0, clock=lambda: 0.0)
    assert limit.filter(kafka_record("aiokafka.conn", "Unable connect to node %s", 1))
    assert limit.filter(kafka_record("aiokafka.consumer.group_coordinator", "Heartbeat failed"))
    assert not limit.filter(kafka_record("aiokafka.conn", "Unable connect to node %s", 2))
    assert limit.filter(kafka_record("aiokafka", "Broker 1 gone at 127.0.0.1:9092"))
    assert not limit.filter(kafka_record("aiokafka", "Broker 2 gone at 127.0.0.1:9093"))  # digits
    for _ in range(5):
        assert limit.filter(kafka_record("enforcer.consumer", "commit failed"))
        assert limit.filter(kafka_record("aiokafka.conn", "connecting", level=logging.INFO))
