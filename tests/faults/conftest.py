"""Identity, points, tiers and the gateway, each reaching PostgreSQL through a proxy the tests
can cut (`loyalty_devstack.proxy`): the database stopping, as the services see it.

They are copies of the suite with databases (`<run>_f_<service>`) and an event namespace of
their own, and a health timer of five minutes, so only a failed call can explain health
turning NOT_SERVING within seconds.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
import httpx
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_devstack.demo import huayue_ladder, huayue_programme
from loyalty_devstack.embedded import Infrastructure, free_port
from loyalty_devstack.proxy import DatabaseProxy
from loyalty_devstack.testing import ServiceRunner
from loyalty_kit.db import asyncpg_params
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings
from sqlalchemy.engine import make_url

from tests.gateway.conftest import Gateway
from tests.points.conftest import ADMIN, Points
from tests.support.clients import As

HEALTH_TIMER_SECONDS = 300.0
SERVICES = ("identity", "points", "tiers", "gateway")


@dataclass
class Suite:
    """The faulted suite: its services, their proxies, the gateway's HTTP side."""

    services: dict[str, RunningService]
    proxies: dict[str, DatabaseProxy]
    gateway: Gateway
    channels: dict[str, grpc.aio.Channel]
    database_url: str  # the real server, not through a proxy
    database_prefix: str

    @property
    def points(self) -> Points:
        return Points(self.channels["points"], self.channels["identity"], self.services["points"])

    def tiers(self) -> Any:
        return As(tiers_service_pb2_grpc.TiersServiceStub, self.channels["tiers"], ADMIN)

    async def cut(self, *names: str) -> None:
        for name in names or SERVICES:
            await self.proxies[name].cut()

    async def restore(self, *names: str) -> None:
        for name in names or SERVICES:
            await self.proxies[name].restore()

    async def terminate_connections(self) -> int:
        """pg_terminate_backend of every connection the faulted services hold; how many."""
        url = make_url(self.database_url).set(drivername="postgresql+asyncpg")
        admin = await asyncpg.connect(**asyncpg_params(url))
        try:
            killed: int = await admin.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname LIKE $1 AND pid <> pg_backend_pid()",
                self.database_prefix.replace("_", "\\_") + "%",
            )
        finally:
            await admin.close()
        return killed

    async def health(self, name: str) -> int:
        stub = health_pb2_grpc.HealthStub(self.channels[name])
        response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        return int(response.status)

    async def health_becomes(self, name: str, status: int, within: float) -> float:
        """Seconds until `name`'s health is `status` (polled; fails after `within`)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while (found := await self.health(name)) != status:
            if loop.time() - started > within:
                raise AssertionError(f"{name} health stayed {found} for {within} s")
            await asyncio.sleep(0.05)
        return loop.time() - started


@pytest_asyncio.fixture(loop_scope="session", scope="package")
async def suite(
    make_settings: Callable[..., Settings], infra: Infrastructure, run_id: str
) -> AsyncIterator[Suite]:
    os.environ["LOYALTY_POINTS_JOB_INTERVAL_SECONDS"] = "3600"
    os.environ["LOYALTY_TIERS_JOB_INTERVAL_SECONDS"] = "3600"
    from loyalty_gateway.app import SPEC as GATEWAY
    from loyalty_identity.app import SPEC as IDENTITY
    from loyalty_points.app import SPEC as POINTS
    from loyalty_tiers.app import SPEC as TIERS

    proxies = {name: await DatabaseProxy(infra.database_url).start() for name in SERVICES}

    def settings_of(name: str, **overrides: Any) -> Settings:
        return make_settings(
            database_url=proxies[name].url(infra.database_url),
            database_prefix=f"{run_id}_f_",
            event_namespace=f"{run_id}f",
            health_check_seconds=HEALTH_TIMER_SECONDS,
            database_pool_size=3,
            **overrides,
        )

    runner = ServiceRunner(settings_of("identity"))
    services: dict[str, RunningService] = {}
    try:
        services["identity"] = await runner.start(IDENTITY, settings_of("identity"))
        identity = services["identity"].target
        services["points"] = await runner.start(
            POINTS, settings_of("points", identity_target=identity)
        )
        services["tiers"] = await runner.start(TIERS, settings_of("tiers"))
        gateway_settings = settings_of(
            "gateway",
            identity_target=identity,
            points_target=services["points"].target,
            tiers_target=services["tiers"].target,
            benefits_target="127.0.0.1:9",  # not started: its parts are left out
            gateway_http_port=free_port(),
        )
        services["gateway"] = await runner.start(GATEWAY, gateway_settings)
        gateway = Gateway(
            services["gateway"], f"http://127.0.0.1:{gateway_settings.gateway_http_port}"
        )
        await _http_ready(gateway.url)
        channels = {
            name: grpc.aio.insecure_channel(service.target) for name, service in services.items()
        }
        made = Suite(services, proxies, gateway, channels, infra.database_url, f"{run_id}_f_")
        await made.points.as_(ADMIN).UpdateProgramme(_programme_request(), timeout=15)
        await made.tiers().UpdateLadder(
            tiers_pb.UpdateLadderRequest(ladder=huayue_ladder(), request_id="faults-ladder")
        )
        yield made
        for channel in channels.values():
            await channel.close()
    finally:
        for proxy in proxies.values():
            await proxy.restore()  # a test that failed while cut must not stall the stop
        await runner.stop_all()
        for proxy in proxies.values():
            await proxy.close()


def _programme_request() -> Any:
    from loyalty.points.v1 import points_service_pb2 as points_pb

    return points_pb.UpdateProgrammeRequest(
        programme=huayue_programme(), reason="faults", request_id="faults-programme"
    )


async def _http_ready(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(200):  # uvicorn starts beside the gRPC server
            try:
                await http.get("/openapi.json")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
