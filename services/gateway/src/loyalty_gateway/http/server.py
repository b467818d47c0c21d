"""The HTTP server (uvicorn) as a job of the gateway's process, stopped with it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator

import uvicorn

from loyalty_gateway.bootstrap import Gateway
from loyalty_gateway.http.app import build_app


class Server(uvicorn.Server):
    """uvicorn without its own signal handling: the kit owns SIGTERM/SIGINT for the process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def http_job(gateway: Gateway) -> Callable[[], Awaitable[None]]:
    settings = gateway.settings

    async def run() -> None:
        config = uvicorn.Config(
            build_app(gateway),
            host=settings.host,
            port=settings.gateway_http_port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
        server = Server(config)

        async def stop_when_asked() -> None:
            await gateway.context.stopping.wait()
            server.should_exit = True

        watcher = asyncio.create_task(stop_when_asked())
        try:
            await server.serve()
        finally:
            watcher.cancel()

    return run
