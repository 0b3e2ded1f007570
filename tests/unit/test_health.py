import asyncio

from enforcer.health import serve_health


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
