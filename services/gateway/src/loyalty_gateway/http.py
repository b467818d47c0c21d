"""The gateway's HTTP/JSON side (Starlette on uvicorn).

For now it answers `/healthz` with the health of every service behind it; the routes derived
from the protos' HTTP annotations and the composite flows land with the gateway issue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator

import grpc
import uvicorn
from grpc_health.v1 import health_pb2, health_pb2_grpc
from loyalty_kit.channels import channel
from loyalty_kit.server import ServiceContext
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

BACKENDS = ("identity", "points", "tiers", "benefits")


def build_app(context: ServiceContext) -> Starlette:
    settings = context.settings
    channels = {
        name: channel(
            settings.target_of(name),
            default_deadline=1.0,
            max_deadline=settings.max_deadline_seconds,
        )
        for name in BACKENDS
    }

    async def check(name: str) -> str:
        stub = health_pb2_grpc.HealthStub(channels[name])
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest())
        except grpc.aio.AioRpcError as error:
            return f"UNAVAILABLE ({error.code().name})"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    async def healthz(_request: Request) -> JSONResponse:
        statuses = await asyncio.gather(*(check(name) for name in BACKENDS))
        services = dict(zip(BACKENDS, statuses, strict=True))
        ok = all(status == "SERVING" for status in statuses)
        return JSONResponse(
            {"status": "SERVING" if ok else "DEGRADED", "services": services},
            status_code=200 if ok else 503,
        )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette):  # type: ignore[no-untyped-def]
        yield
        for ch in channels.values():
            await ch.close()

    return Starlette(routes=[Route("/healthz", healthz)], lifespan=lifespan)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the kit owns SIGTERM/SIGINT for the process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def http_job(context: ServiceContext) -> Callable[[], Awaitable[None]]:
    settings = context.settings

    async def run() -> None:
        config = uvicorn.Config(
            build_app(context),
            host=settings.host,
            port=settings.gateway_http_port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
        server = _Server(config)
        context.extras["http_server"] = server

        async def stop_when_asked() -> None:
            await context.stopping.wait()
            server.should_exit = True

        watcher = asyncio.create_task(stop_when_asked())
        try:
            await server.serve()
        finally:
            watcher.cancel()

    return run
