"""A TCP proxy between services and PostgreSQL that a test can cut and restore.

It listens on 127.0.0.1:<free port> and forwards every connection to the real server: its Unix
socket (embedded PostgreSQL) or its host and port. `cut()` closes every open connection and
stops listening, so new connections are refused, as when the database stops; `restore()`
listens again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from loyalty_kit.db import asyncpg_params
from sqlalchemy.engine import URL, make_url


class DatabaseProxy:
    def __init__(self, database_url: str) -> None:
        params = asyncpg_params(make_url(database_url).set(drivername="postgresql+asyncpg"))
        self._host: str = params["host"]
        self._port: int = params.get("port", 5432)
        if self._host.startswith("/") and os.path.isdir(self._host):
            self._host = os.path.join(self._host, f".s.PGSQL.{self._port}")
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.accepted = 0

    def url(self, database_url: str) -> str:
        """`database_url` with the proxy as its server."""
        url: URL = make_url(database_url)
        return url.set(host="127.0.0.1", port=self.port, query={}).render_as_string(
            hide_password=False
        )

    async def start(self) -> DatabaseProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._host.startswith("/"):
            return await asyncio.open_unix_connection(self._host)
        return await asyncio.open_connection(self._host, self._port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await self._open_upstream()
        except OSError:
            writer.close()
            return
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
                self._pipes.discard(task)
            for end in (writer, up_writer):
                with contextlib.suppress(Exception):
                    end.close()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()

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
