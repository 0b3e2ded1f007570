"""The running service stays quiet and up through a broker restart and hostile health probes."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest
from cli_runner import Cli
from harness import write_policy
from replicas import Replica
from support import MakeBucket, MakeKey, StackEnv, restart_component
from waiting import eventually

#: A log line of the Kafka client (the service runs at --log-level WARNING), as text or JSON.
KAFKA_CLIENT_LINE = re.compile(
    r"^(?:\S+ \S+ (?:WARNING|ERROR|CRITICAL) aiokafka"
    r'|\{.*"level": "(?:WARNING|ERROR|CRITICAL)", "logger": "aiokafka)',
    re.MULTILINE,
)


async def raw_request(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await reader.read()
    except ConnectionError:  # the server dropped a client that sent too much
        return b""
    finally:
        writer.close()


async def wait_compliant(s3: Any, bucket: str, keys: list[str], ek: str, service: Replica) -> None:
    await eventually(
        lambda: [s3.head_object(Bucket=bucket, Key=k).get("SSEKMSKeyId") for k in keys],
        f"{len(keys)} objects under {ek}", timeout=90,
        until=lambda heads: heads == [f"arn:aws:kms:{ek}"] * len(keys),
        every=0.5, alive=service.alive, context=lambda: service.log_text()[-3000:],
    )  # fmt: skip


@pytest.mark.stops_stack
@pytest.mark.timeout(240)  # a broker restart takes half a minute on a shared machine
async def test_a_broker_restart_logs_a_bounded_number_of_lines(
    stack: StackEnv, s3_admin: Any, make_bucket: MakeBucket, make_key: MakeKey, tmp_path: Path
) -> None:
    ek, bucket = make_key(), make_bucket()
    cli = Cli(
        stack, policy_file=write_policy(tmp_path / "policy.yaml", {"bucket": bucket, "key": ek})
    )
    await cli.start_at_end()
    service = await Replica.start(cli.env(), tmp_path / "enforcer.log", log_level="WARNING")
    try:
        await service.wait_ready()
        s3_admin.put_object(Bucket=bucket, Key="before", Body=b"before the restart")
        await wait_compliant(s3_admin, bucket, ["before"], ek, service)
        lines_before = len(KAFKA_CLIENT_LINE.findall(service.log_text()))
        all_before = len(service.log_text().splitlines())

        started = time.monotonic()
        await asyncio.to_thread(restart_component, "kafka")
        await asyncio.sleep(5)  # the clients notice and reconnect
        restart_seconds = time.monotonic() - started

        keys = [f"after/{i}" for i in range(20)]
        for key in keys:
            s3_admin.put_object(Bucket=bucket, Key=key, Body=b"after the restart")
        await wait_compliant(s3_admin, bucket, keys, ek, service)
        noise = KAFKA_CLIENT_LINE.findall(service.log_text())[lines_before:]
        lines = service.log_text().splitlines()[all_before:]
    finally:
        code = await service.stop()
    log = service.log_text()
    assert code == 0, log[-5000:]
    assert "Traceback" not in log, log[-5000:]
    print(
        f"\nbroker restart ({restart_seconds:.1f} s + 5 s): {len(noise)} Kafka client lines, "
        f"{len(lines)} lines in all:\n" + "\n".join(lines)
    )
    assert len(noise) < 20, log[-5000:]
    assert len(lines) < 40, log[-5000:]  # the enforcer's own lines stay bounded too


async def test_malformed_health_requests_get_400_and_no_traceback(
    stack: StackEnv, make_bucket: MakeBucket, make_key: MakeKey, tmp_path: Path
) -> None:
    cli = Cli(
        stack,
        policy_file=write_policy(
            tmp_path / "policy.yaml", {"bucket": make_bucket(), "key": make_key()}
        ),
    )
    service = await Replica.start(
        cli.env(ENFORCER_KAFKA__AUTO_OFFSET_RESET="latest"),
        tmp_path / "enforcer.log",
        log_level="WARNING",
    )
    try:
        await service.wait_ready()
        for junk in (
            b"\xff\xfe\x00\x01garbage\r\n\r\n",
            b"BREW /readyz HTCPCP/1.0\r\n\r\n",
            b"\r\n",
        ):
            assert (await raw_request(service.health_port, junk)).startswith(b"HTTP/1.1 400 ")
        assert await raw_request(service.health_port, b"GET /" + b"a" * 70_000) == b""
        assert await service.readiness() == 200
    finally:
        code = await service.stop()
    assert code == 0
    assert "Traceback" not in service.log_text() and "exception" not in service.log_text().lower()
