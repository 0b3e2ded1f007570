import asyncio
import logging

import pytest

from enforcer.errors import ConfigError
from enforcer.health import readiness_of, serve_health


async def get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_liveness_and_readiness() -> None:
    state = {"ready": False}

    def readiness() -> tuple[bool, str]:
        return state["ready"], "paused" if not state["ready"] else "consuming"

    async with serve_health(0, readiness, host="127.0.0.1") as port:
        assert (await get(port, "/healthz"))[0] == 200
        status, body = await get(port, "/readyz")
        assert (status, b'"paused"' in body) == (503, True)
        state["ready"] = True
        assert (await get(port, "/readyz"))[0] == 200
        assert (await get(port, "/nope"))[0] == 404


async def test_metrics_are_served_as_prometheus_text() -> None:
    def metrics() -> tuple[str, bytes]:
        return "text/plain; version=0.0.4; charset=utf-8", b"enforcer_paused 0.0\n"

    async with serve_health(0, lambda: (True, "ok"), host="127.0.0.1", metrics=metrics) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        response = await reader.read()
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Type: text/plain; version=0.0.4" in head
    assert body == b"enforcer_paused 0.0\n"


@pytest.mark.parametrize(
    ("paused", "joined", "partitions", "ready", "reason"),
    [
        (False, False, 0, False, "joining"),
        (False, True, 0, True, "idle"),  # more replicas than partitions: ready, not failing
        (False, True, 3, True, "consuming 3"),
        (True, True, 3, False, "paused"),
        (True, True, 0, False, "paused"),
    ],
)
def test_readiness(paused: bool, joined: bool, partitions: int, ready: bool, reason: str) -> None:
    answer = readiness_of(paused=paused, joined=joined, partitions=partitions)
    assert answer[0] is ready and reason in answer[1]


async def raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await reader.read()
    except ConnectionError:  # the server may drop a client that sent too much
        return b""
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"\xff\xfe\x00garbage\r\n\r\n", b"400"),
        (b"GET /\xff\xfe HTTP/1.1\r\n\r\n", b"404"),
        (b"POST /readyz HTTP/1.1\r\n\r\n", b"400"),
        (b"GET\r\n\r\n", b"400"),
        (b"\r\n", b"400"),
        (b"GET /healthz SPDY/3\r\n\r\n", b"400"),
    ],
)
async def test_malformed_requests_get_4xx_and_log_nothing(
    request_bytes: bytes, status: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve_health(0, lambda: (True, "ok"), host="127.0.0.1") as port:
        response = await raw(port, request_bytes)
        assert response.startswith(b"HTTP/1.1 " + status + b" "), response
        assert (await get(port, "/healthz"))[0] == 200  # still serving
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


async def test_an_endless_request_line_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    async with serve_health(0, lambda: (True, "ok"), host="127.0.0.1") as port:
        assert await raw(port, b"GET /" + b"a" * 100_000) == b""
        assert (await get(port, "/healthz"))[0] == 200
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


async def test_a_port_in_use_is_a_configuration_error() -> None:
    async with serve_health(0, lambda: (True, "ok"), host="127.0.0.1") as port:
        with pytest.raises(ConfigError, match="ENFORCER_HEALTH_PORT"):
            async with serve_health(port, lambda: (True, "ok"), host="127.0.0.1"):
                pass
