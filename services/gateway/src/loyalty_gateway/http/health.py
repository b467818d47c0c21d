"""`GET /healthz`: 200 when every service the gateway's tills and apps need answers SERVING, else
503; each backend's state either way (a readiness probe: `deploy/`). The read side (insights)
and engagement (journeys) are reported but do not make the gateway unready."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.requests import Request
from starlette.responses import JSONResponse

from loyalty_gateway.adapters.backends import BACKENDS, SERVING_BACKENDS, Backends

CHECK_SECONDS = 1.0


class Health:
    def __init__(self, backends: Backends) -> None:
        self.backends = backends

    async def check(self, name: str) -> str:
        stub = health_pb2_grpc.HealthStub(self.backends.channels[name])
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=CHECK_SECONDS)
        except grpc.aio.AioRpcError as error:
            return f"UNAVAILABLE ({error.code().name})"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    async def answer(self, _request: Request) -> JSONResponse:
        statuses = await asyncio.gather(*(self.check(name) for name in BACKENDS))
        services = dict(zip(BACKENDS, statuses, strict=True))
        ok = all(services[name] == "SERVING" for name in SERVING_BACKENDS)
        return JSONResponse(
            {"status": "SERVING" if ok else "DEGRADED", "services": services},
            status_code=200 if ok else 503,
        )
