import asyncio

import pytest

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

    async with serve_health(0, lambda: (True, "ok"), metrics, host="127.0.0.1") as port:
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
