"""The rate limit on the Kafka client's repeated warnings and errors."""

import logging

from enforcer.logs import RateLimit


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_one_line_per_kind_per_window_then_a_count() -> None:
    now = [0.0]
    limit = RateLimit(window=30.0, clock=lambda: now[0])
    passed = []
    for second in range(60):  # two windows of a node that keeps refusing, 10 attempts a second
        now[0] = float(second)
        for node in range(10):
            entry = record(
                "aiokafka.conn", "Unable connect to node with id %s: %s", node, "refused"
            )
            if limit.filter(entry):
                passed.append(entry.getMessage())
    assert len(passed) == 2
    assert passed[1].endswith("(299 similar held back in the last 30 s)")


def test_kinds_are_counted_apart_and_other_loggers_and_levels_pass() -> None:
    limit = RateLimit(window=30.0, clock=lambda: 0.0)
    assert limit.filter(record("aiokafka.conn", "Unable connect to node %s", 1))
    assert limit.filter(record("aiokafka.consumer.group_coordinator", "Heartbeat failed"))
    assert not limit.filter(record("aiokafka.conn", "Unable connect to node %s", 2))
    assert limit.filter(record("aiokafka", "Broker 1 gone at 127.0.0.1:9092"))
    assert not limit.filter(record("aiokafka", "Broker 2 gone at 127.0.0.1:9093"))  # digits
    for _ in range(5):
        assert limit.filter(record("enforcer.consumer", "commit failed"))
        assert limit.filter(record("aiokafka.conn", "connecting", level=logging.INFO))
