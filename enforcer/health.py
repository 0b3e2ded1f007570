"""Liveness, readiness and metrics over plain HTTP, for Kubernetes (``ENFORCER_HEALTH_PORT``).

``/healthz`` answers 200 while the event loop runs. ``/readyz`` answers 200 when the consumer has
joined its group and the outage gate is closed, else 503 with the reason — a paused enforcer is
alive (do not restart it) but not ready (alert on it). A member that joined but was given no
partition (more replicas than partitions) is ready: idle, not failing. ``/metrics`` answers the
Prometheus text format.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

Readiness = Callable[[], tuple[bool, str]]
#: Renders the current metrics; returns (content type, body).
Metrics = Callable[[], tuple[str, bytes]]


@asynccontextmanager
async def serve_health(
    port: int,
    readiness: Readiness,
    metrics: Metrics | None = None,
    host: str = "0.0.0.0",  # noqa: S104 - the kubelet probes the pod IP
) -> AsyncIterator[int]:
    """Serve the probes until the context exits; yields the bound port (0 picks a free one)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            path = request.split(b" ")[1].decode() if request.count(b" ") >= 2 else ""
            if path == "/metrics" and metrics is not None:
                status, (content_type, payload) = "200 OK", metrics()
            else:
                status, body = _answer(path, readiness)
                content_type, payload = "application/json", json.dumps(body).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
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
    return "404 Not Found", {"error": "try /healthz, /readyz or /metrics"}


def readiness_of(*, paused: bool, joined: bool, partitions: int) -> tuple[bool, str]:
    """Ready unless paused or still joining; a member without partitions is ready and idle, so a
    rollout with more replicas than partitions does not stall."""
    if paused:
        return False, "paused: KMS or storage outage"
    if not joined:
        return False, "joining the consumer group"
    if partitions == 0:
        return True, "idle: no partitions assigned (more members than partitions)"
    return True, f"consuming {partitions} partition(s)"
