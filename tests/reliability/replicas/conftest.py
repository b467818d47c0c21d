"""A second replica of points, tiers, benefits and the gateway beside the run's own: the same
settings (databases, event namespace, peers) on another port, so both consume the same
durable consumers and run the same jobs. Started for this folder's tests only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest_asyncio
from loyalty_devstack.embedded import free_port
from loyalty_devstack.testing import ServiceRunner
from loyalty_kit.server import RunningService, ServiceSpec
from loyalty_kit.settings import Settings

from tests.benefits.conftest import benefits, catalogue, ladder
from tests.gateway.conftest import gateway
from tests.points.conftest import points, programme
from tests.support.clock import Clock
from tests.tiers.conftest import tiers

__all__ = [
    "benefits",
    "catalogue",
    "gateway",
    "ladder",
    "points",
    "programme",
    "tiers",
]


@dataclass
class Replicas:
    """Both processes of a service: the run's own (`first`) and one more (`second`)."""

    first: RunningService
    second: RunningService

    @property
    def both(self) -> tuple[RunningService, RunningService]:
        return self.first, self.second


async def _beside(
    spec: ServiceSpec[Any, ...], first: RunningService, clock: Clock | None, **update: object
) -> AsyncIterator[Replicas]:
    """A second replica of `first`'s service; `clock` for a service that reads one (the
    gateway takes none)."""
    runner = ServiceRunner(first.context.settings)
    settings: Settings = first.context.settings.model_copy(update=update)
    if clock is None:
        second = await runner.start(spec, settings)
    else:
        second = await runner.start(spec, settings, clock=clock)
    try:
        yield Replicas(first, second)
    finally:
        await runner.stop_all()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def points_replicas(points_service: RunningService, clock: Clock) -> AsyncIterator[Replicas]:
    from loyalty_points.app import SPEC

    async for replicas in _beside(SPEC, points_service, clock):
        yield replicas


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def tiers_replicas(tiers_service: RunningService, clock: Clock) -> AsyncIterator[Replicas]:
    from loyalty_tiers.app import SPEC

    async for replicas in _beside(SPEC, tiers_service, clock):
        yield replicas


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def benefits_replicas(
    benefits_service: RunningService, clock: Clock
) -> AsyncIterator[Replicas]:
    from loyalty_benefits.app import SPEC

    async for replicas in _beside(SPEC, benefits_service, clock):
        yield replicas


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def gateway_replicas(gateway_service: RunningService) -> AsyncIterator[Replicas]:
    """Two gateways on one checkouts log (each with its own HTTP port)."""
    from loyalty_gateway.app import SPEC

    port = free_port()
    async for replicas in _beside(SPEC, gateway_service, None, gateway_http_port=port):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(100):  # uvicorn starts beside the gRPC server
                try:
                    await http.get("/openapi.json")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        yield replicas
