"""``enforcer status`` asks a running enforcer's readiness endpoint whether it is paused."""

from __future__ import annotations

import socket

from enforcer.cli.status import ask_readiness
from enforcer.health import serve_health


async def test_a_paused_service_says_so_on_readyz() -> None:
    async with serve_health(0, lambda: (False, "paused: outage of kms (x)"), "127.0.0.1") as port:
        assert await ask_readiness(f"http://127.0.0.1:{port}/") == (
            True,
            "paused: outage of kms (x)",
        )
    async with serve_health(0, lambda: (True, "consuming"), "127.0.0.1") as port:
        assert await ask_readiness(f"http://127.0.0.1:{port}") == (False, "consuming")


async def test_an_unreachable_service_is_unknown() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: the connection is refused
        paused, why = await ask_readiness(f"http://127.0.0.1:{port}")
    assert paused is None and why.startswith("unknown: ") and "ConnectError" in why
