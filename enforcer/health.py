"""Liveness and readiness over plain HTTP, for Kubernetes probes (``ENFORCER_HEALTH_PORT``).

``/healthz`` answers 200 while the event loop runs. ``/readyz`` answers 200 when the consumer has
joined its group and the outage gate is closed, else 503 with the reason — a paused enforcer is
alive (do not restart it) but not ready (alert on it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

Readiness = Callable[[], tuple[bool, str]]


@asynccontextmanager
async def serve_health(
    port: int,
    readiness: Readiness,
    host: str = "0.0.0.0",  # noqa: S104 - the kubelet probes the pod IP
) -> AsyncIterator[int]:
    """Serve the probes until the context exits; yields the bound port (0 picks a free one)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            path = request.split(b" ")[1].decode() if request.count(b" ") >= 2 else ""
            status, body = _answer(path, readiness)
            payload = json.dumps(body).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def _answer(path: str, readiness: Readiness) -> tuple[str, dict[str, object]]:
    if path == "/healthz":
        return "200 OK", {"status": "alive"}
    if path == "/readyz":
        ready, reason = readiness()
        return ("200 OK" if ready else "503 Service Unavailable"), {
            "ready": ready,
            "reason": reason,
        }
    return "404 Not Found", {"error": "try /healthz or /readyz"}
