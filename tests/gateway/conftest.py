"""The gateway in front of the real identity, points and tiers services of the test run, and
API clients made through its client store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest_asyncio
from loyalty_gateway.adapters.clients import ClientStore
from loyalty_kit.server import RunningService

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


@pytest_asyncio.fixture(loop_scope="session")
async def gateway(
    gateway_service: RunningService, programme: Any, tiers: Any, catalogue: Any
) -> Gateway:
    return Gateway(
        gateway_service, f"http://127.0.0.1:{gateway_service.context.settings.gateway_http_port}"
    )
