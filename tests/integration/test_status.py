"""``enforcer status`` on the real stack, over the SASL_SSL listener: a backlog shows as lag and
fails ``--max-lag``; once a running ``enforcer run`` has drained it, the group has one member that
holds every partition, no lag, and its readiness endpoint says it is not paused."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from cli_runner import ENFORCER, Cli
from harness import sasl_ssl
from support import MakeBucket, StackEnv, free_port, minio_event, produce
from waiting import eventually

BACKLOG = 12


@pytest.fixture
def topic() -> str:
    return f"status-in-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def cli(stack: StackEnv, topic: str) -> Cli:
    return Cli(stack, extra_env={**sasl_ssl(stack), "ENFORCER_KAFKA__TOPICS": json.dumps([topic])})


@contextmanager
def running_enforcer(cli: Cli, health_port: int) -> Iterator[subprocess.Popen[str]]:
    """``enforcer run`` in the background, stopped with SIGTERM (it must exit 0)."""
    env = cli.env(ENFORCER_HEALTH_PORT=str(health_port))
    proc = subprocess.Popen(  # noqa: S603 - our own entry point
        [str(ENFORCER), "--log-level", "WARNING", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr


def status(cli: Cli, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli("status", "--json", *args)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, result.json()


async def test_status_shows_a_backlog_then_the_member_that_drained_it(
    cli: Cli, stack: StackEnv, topic: str, make_bucket: MakeBucket, s3_admin: Any
) -> None:
    bucket = make_bucket(notify=False)  # no default key, no policy: every object out of scope
    for n in range(BACKLOG):
        s3_admin.put_object(Bucket=bucket, Key=f"o{n}", Body=b"x")
    events = [(f"o{n}".encode(), minio_event(bucket, f"o{n}")) for n in range(BACKLOG)]
    await produce(stack.kafka_bootstrap, topic, events)

    code, before = status(cli, "--max-lag", str(BACKLOG - 1))
    assert code == 1
    assert before["total_lag"] == BACKLOG
    assert before["members"] == [] and before["paused"] is None
    assert {p["committed"] for p in before["partitions"]} == {None}

    port = free_port()
    with running_enforcer(cli, port) as proc:
        _, after = await eventually(
            lambda: status(cli, "--max-lag", "0", "--health-url", f"http://127.0.0.1:{port}"),
            "the running member to drain the backlog", timeout=90, every=1,
            until=lambda got: got[0] == 0 and got[1]["members"] and got[1]["paused"] is False,
            alive=lambda: proc.poll() is None,
            context=lambda: proc.stderr.read() if proc.stderr and proc.poll() is not None else "",
        )  # fmt: skip
        # Inside the service's pod the health port is in the settings: no --health-url needed.
        table = cli("status", ENFORCER_HEALTH_PORT=str(port))

    assert after["total_lag"] == 0 and after["health"].startswith("consuming")
    [member] = after["members"]
    assert sorted(member["partitions"]) == sorted(
        f"{p['topic']}:{p['partition']}" for p in after["partitions"]
    )
    assert {p["member_id"] for p in after["partitions"]} == {member["member_id"]}
    assert sum(p["committed"] or 0 for p in after["partitions"]) == BACKLOG
    assert table.returncode == 0, table.stderr
    head, columns, *rows = table.stdout.splitlines()
    assert f"group {cli.group_id}: Stable, 1 member(s), total lag 0, paused no" in head
    assert columns.split() == [
        "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST"
    ]  # fmt: skip
    assert len(rows) == len(after["partitions"])
    topics = (topic, cli.backfill_topic)  # the backfill topic is the group's second lane
    assert all(row.split()[0] in topics and member["member_id"] in row for row in rows)
    assert {p["topic"] for p in after["partitions"]} == set(topics)
