"""The gateway in front of the real identity, points and tiers services of the test run, and
API clients made through its client store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest_asyncio
from loyalty_devstack.testing import ServiceRunner
from loyalty_gateway.app import SPEC
from loyalty_gateway.clients import ClientStore
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings

from tests.benefits.conftest import catalogue
from tests.points.conftest import points, programme
from tests.tiers.conftest import tiers

__all__ = ["catalogue", "points", "programme", "tiers"]


@dataclass
class Gateway:
    service: RunningService
    url: str

    async def client(self, unit: str, *scopes: str, rate: int = 1000) -> tuple[str, str]:
        """A new API client: (client id, secret)."""
        async with self.service.context.uow() as uow:
            made, secret = await ClientStore(uow.session).create(unit, list(scopes), rate=rate)
            await uow.commit()
        return made.client_id, secret

    async def token(self, http: httpx.AsyncClient, client_id: str, secret: str) -> str:
        response = await http.post(
            "/v1/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def session(self, unit: str, *scopes: str, rate: int = 1000) -> httpx.AsyncClient:
        """An HTTP client authenticated as a new API client of `unit` with `scopes`."""
        async with httpx.AsyncClient(base_url=self.url, timeout=15) as plain:
            token = await self.token(plain, *(await self.client(unit, *scopes, rate=rate)))
        return httpx.AsyncClient(
            base_url=self.url, timeout=15, headers={"Authorization": f"Bearer {token}"}
        )


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def gateway_service(
    settings: Settings,
    identity_service: RunningService,
    points_service: RunningService,
    tiers_service: RunningService,
    benefits_service: RunningService,
) -> AsyncIterator[RunningService]:
    runner = ServiceRunner(settings)
    gateway_settings = settings.model_copy(
        update={
            "identity_target": identity_service.target,
            "points_target": points_service.target,
            "tiers_target": tiers_service.target,
            "benefits_target": benefits_service.target,
        }
    )
    service = await runner.start(SPEC, gateway_settings)
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.gateway_http_port}")
    for _ in range(100):  # uvicorn starts beside the gRPC server
        try:
            await http.get("/openapi.json")
            break
        except httpx.TransportError:
            import asyncio

            await asyncio.sleep(0.05)
    await http.aclose()
    yield service
    await runner.stop_all()


@pytest_asyncio.fixture(loop_scope="session")
async def gateway(
    gateway_service: RunningService, programme: Any, tiers: Any, catalogue: Any
) -> Gateway:
    return Gateway(
        gateway_service, f"http://127.0.0.1:{gateway_service.context.settings.gateway_http_port}"
    )
