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

from enforcer.errors import ConfigError

Readiness = Callable[[], tuple[bool, str]]
#: The longest request line read; probes send a few dozen bytes.
_MAX_LINE = 8192


@asynccontextmanager
async def serve_health(
    port: int,
    readiness: Readiness,
    host: str = "0.0.0.0",  # noqa: S104 - the kubelet probes the pod IP
) -> AsyncIterator[int]:
    """Serve the probes until the context exits; yields the bound port (0 picks a free one).

    A request that is not a readable ``GET <path> HTTP/1.x`` line is answered 400; a client that
    sends too much, too slowly or goes away is dropped. Nothing a client sends raises.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=5)
            status, body = _respond(line, readiness)
            payload = json.dumps(body).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError):  # ValueError: line over the limit
            pass
        finally:
            writer.close()

    try:
        server = await asyncio.start_server(handle, host, port, limit=_MAX_LINE)
    except OSError as exc:
        raise ConfigError(
            f"health server cannot listen on {host}:{port} (ENFORCER_HEALTH_HOST, "
            f"ENFORCER_HEALTH_PORT): {exc.strerror or exc}"
        ) from None
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def _respond(line: bytes, readiness: Readiness) -> tuple[str, dict[str, object]]:
    parts = line.split()
    if len(parts) != 3 or parts[0] != b"GET" or not parts[2].startswith(b"HTTP/1."):
        return "400 Bad Request", {"error": "expected GET /healthz or GET /readyz"}
    return _answer(parts[1].decode("ascii", "replace"), readiness)


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
