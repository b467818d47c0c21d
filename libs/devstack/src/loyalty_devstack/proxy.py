"""TCP proxies on loopback that a test or a fault scenario can cut, slow down, drop or reset.

`TcpProxy` listens on 127.0.0.1:<free port> (or another loopback address given as `listen`, out
of reach of a stray client still retrying a port that was once another server's) and forwards
every connection to its upstream: a host and port, or a Unix socket (embedded PostgreSQL). Its
faults, changed at any time:

- `cut()` closes every open connection and stops listening, so new connections are refused
  (a server that stopped); `restore()` listens again on the same port;
- `latency` seconds added before each chunk is passed on, both ways (a slow network);
- `drop` the share of new connections that go silent: accepted, never forwarded nor closed
  (a peer that vanished: only a deadline or a keepalive ends the call);
- `reset_open()` resets every open connection (RST, not FIN), as a middlebox losing its state.

`DatabaseProxy` is one in front of the PostgreSQL server of a database URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import struct

from loyalty_kit.db import asyncpg_params
from sqlalchemy.engine import URL, make_url


class TcpProxy:
    def __init__(
        self, host: str, port: int = 0, *, seed: int | None = None, listen: str = "127.0.0.1"
    ) -> None:
        """Upstream `host:port`, or the Unix socket at `host` (a path) when it is one."""
        self._host = host
        self._listen = listen
        self._port = port
        self.port = 0
        self.latency = 0.0
        self.drop = 0.0
        self._random = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0
        self.dropped = 0
        self.resets = 0

    @property
    def target(self) -> str:
        return f"{self._listen}:{self.port}"

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, self._listen, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._host.startswith("/"):
            return await asyncio.open_unix_connection(self._host)
        return await asyncio.open_connection(self._host, self._port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.drop and self._random.random() < self.drop:
            self.dropped += 1
            await self._hold_silently(reader, writer)
            return
        try:
            up_reader, up_writer = await self._open_upstream()
        except OSError:
            writer.close()
            return
        self._writers.add(writer)
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._writers.discard(writer)
            for task in pipes:
                task.cancel()
                self._pipes.discard(task)
            for end in (writer, up_writer):
                with contextlib.suppress(Exception):
                    end.close()

    async def _hold_silently(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Read and discard until the client gives up (or the proxy is cut)."""
        task = asyncio.create_task(self._discard(reader))
        self._pipes.add(task)
        try:
            await task
        except asyncio.CancelledError:
            pass
        finally:
            self._pipes.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    async def _discard(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while await reader.read(65536):
                pass

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await source.read(65536):
                if self.latency:
                    await asyncio.sleep(self.latency)
                sink.write(data)
                await sink.drain()

    def reset_open(self) -> int:
        """Reset every open client connection (RST); how many."""
        count = 0
        for writer in list(self._writers):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    # Linger on with a timeout of 0: close() sends RST instead of FIN.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            count += 1
        self.resets += count
        return count

    async def cut(self) -> None:
        """Refuse new connections and close every open one."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._pipes):
            task.cancel()
        await asyncio.sleep(0)

    async def restore(self) -> None:
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()


class DatabaseProxy(TcpProxy):
    """A proxy in front of the PostgreSQL server of `database_url`: its Unix socket (embedded
    PostgreSQL) or its host and port."""

    def __init__(self, database_url: str) -> None:
        params = asyncpg_params(make_url(database_url).set(drivername="postgresql+asyncpg"))
        host: str = params["host"]
        port: int = params.get("port", 5432)
        if host.startswith("/") and os.path.isdir(host):
            host = os.path.join(host, f".s.PGSQL.{port}")
        super().__init__(host, port)

    def url(self, database_url: str) -> str:
        """`database_url` with the proxy as its server."""
        url: URL = make_url(database_url)
        return url.set(host="127.0.0.1", port=self.port, query={}).render_as_string(
            hide_password=False
        )

    async def start(self) -> DatabaseProxy:
        await super().start()
        return self
