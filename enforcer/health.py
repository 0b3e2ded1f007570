"""Liveness, readiness and metrics over plain HTTP, for Kubernetes (``ENFORCER_HEALTH_PORT``).

``/healthz`` answers 200 while the event loop runs. ``/readyz`` answers 200 when the consumer has
joined its group and the outage gate is closed, else 503 with the reason — a paused enforcer is
alive (do not restart it) but not ready (alert on it). A member that joined but was given no
partition (more replicas than partitions) is ready: idle, not failing. ``/metrics`` answers the
Prometheus text format.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from enforcer.errors import ConfigError

T = TypeVar("T")
#: Whether the service is ready, and why (or a coroutine answering that: the supervisor of
#: several workers asks them).
Readiness = Callable[[], tuple[bool, str] | Awaitable[tuple[bool, str]]]
#: Renders the current metrics; returns (content type, body) (or a coroutine answering that).
Metrics = Callable[[], tuple[str, bytes] | Awaitable[tuple[str, bytes]]]
#: The longest request line read; probes send a few dozen bytes.
_MAX_LINE = 8192


@asynccontextmanager
async def serve_health(
    port: int,
    readiness: Readiness,
    host: str = "0.0.0.0",  # noqa: S104 - the kubelet probes the pod IP
    metrics: Metrics | None = None,
) -> AsyncIterator[int]:
    """Serve the probes (and ``metrics`` on ``/metrics``) until the context exits; yields the
    bound port (0 picks a free one).

    A request that is not a readable ``GET <path> HTTP/1.x`` line is answered 400; a client that
    sends too much, too slowly or goes away is dropped. Nothing a client sends raises.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=5)
            status, content_type, payload = await _respond(line, readiness, metrics)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
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


async def _value(answer: T | Awaitable[T]) -> T:
    return await answer if inspect.isawaitable(answer) else answer


async def _respond(
    line: bytes, readiness: Readiness, metrics: Metrics | None
) -> tuple[str, str, bytes]:
    """(status, content type, body) for one request line."""
    parts = line.split()
    body: dict[str, object]
    if len(parts) != 3 or parts[0] != b"GET" or not parts[2].startswith(b"HTTP/1."):
        status, body = "400 Bad Request", {"error": "expected GET /healthz, /readyz or /metrics"}
    elif parts[1] == b"/metrics" and metrics is not None:
        return ("200 OK", *await _value(metrics()))
    else:
        status, body = await _answer(parts[1].decode("ascii", "replace"), readiness)
    return status, "application/json", json.dumps(body).encode()


async def _answer(path: str, readiness: Readiness) -> tuple[str, dict[str, object]]:
    if path == "/healthz":
        return "200 OK", {"status": "alive"}
    if path == "/readyz":
        ready, reason = await _value(readiness())
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
