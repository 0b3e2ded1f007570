"""A TCP proxy in front of the stack's MinIO that can hold requests back: a store that hangs
without failing, for tests of what slow work does to the consumer (the store itself stays real).

``async with StallProxy(host, port) as proxy``: point ``ENFORCER_S3__ENDPOINT_URL`` at
``proxy.url``; while ``proxy.holding("PUT ")`` is entered, every request that starts with that
method waits, unforwarded, until the block ends (a rewrite blocked in flight); while
``proxy.refusing()`` is entered, every connection is dropped (the store is down); while
``proxy.dropping("DELETE ")`` is entered, the connection of every request that starts with that
method is dropped before it is forwarded (the store goes away for those requests only: a purge
in an outage). Bytes pass unchanged, so SigV4 signatures stay valid.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from types import TracebackType


class StallProxy:
    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._method: bytes | None = None
        self._released = asyncio.Event()
        self._released.set()
        self._pumps: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._refusing = False
        self._dropping: bytes | None = None
        #: Requests held back so far, and dropped so far.
        self.held = 0
        self.dropped = 0
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> StallProxy:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._released.set()
        assert self._server is not None
        self._server.close()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def holding(self, method: str) -> AsyncIterator[None]:
        """Hold back every request starting with ``method`` (e.g. ``"PUT "``) until exit."""
        self._method, self._released = method.encode(), asyncio.Event()
        try:
            yield
        finally:
            self._method = None
            self._released.set()

    @contextlib.contextmanager
    def refusing(self) -> Iterator[None]:
        """Drop every connection, open or new, until exit."""
        self._refusing = True
        for writer in list(self._writers):
            writer.close()
        try:
            yield
        finally:
            self._refusing = False

    @contextlib.contextmanager
    def dropping(self, method: str) -> Iterator[None]:
        """Drop the connection of every request starting with ``method`` until exit."""
        self._dropping = method.encode()
        try:
            yield
        finally:
            self._dropping = None

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.add(writer)
        for pump in (
            self._pump(reader, upstream_writer, hold=True, client=writer),
            self._pump(upstream_reader, writer, hold=False),
        ):
            task = asyncio.create_task(pump)
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        hold: bool,
        client: asyncio.StreamWriter | None = None,
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if hold and self._dropping is not None and chunk.startswith(self._dropping):
                    self.dropped += 1
                    if client is not None:
                        client.close()
                    break
                if hold and self._method is not None and chunk.startswith(self._method):
                    self.held += 1
                    await self._released.wait()
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.close()
