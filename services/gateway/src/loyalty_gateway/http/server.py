"""The HTTP server (uvicorn) as a job of the gateway's process, stopped with it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator

import uvicorn

from loyalty_gateway.bootstrap import Gateway
from loyalty_gateway.http.app import build_app


class Server(uvicorn.Server):
    """uvicorn without its own signal handling: the kit owns SIGTERM/SIGINT for the process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def shared_listener(host: str, port: int, backlog: int) -> socket.socket:
    """The HTTP port bound with SO_REUSEPORT, as each worker of `LOYALTY_WORKERS` binds it: the
    kernel spreads new connections over the workers' listeners."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((host, port))
        listener.listen(backlog)
    except BaseException:
        listener.close()
        raise
    return listener


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

        # Several workers: each binds the port itself (SO_REUSEPORT); one: uvicorn binds it.
        sockets = (
            [shared_listener(config.host, config.port, config.backlog)]
            if settings.workers > 1
            else None
        )
        watcher = asyncio.create_task(stop_when_asked())
        try:
            await server.serve(sockets)
        finally:
            watcher.cancel()
            for listener in sockets or ():
                listener.close()

    return run
