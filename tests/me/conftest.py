"""The member page at /me in Chromium (the console's browser fixtures), against a gateway of
this module's own: its identity replica reaches this run's engagement service, so sign-in codes
land in the development sink (the session's identity starts before engagement and sends none).
Both share the session's databases, points, tiers, benefits and insights services."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest_asyncio
from loyalty.identity.v1 import member_code_pb2 as code_pb
from loyalty.identity.v1 import member_code_pb2_grpc
from loyalty_devstack.embedded import free_port
from loyalty_devstack.testing import ServiceRunner
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings

from tests.console.conftest import Watched, browser, page
from tests.gateway.conftest import Gateway
from tests.points.conftest import programme
from tests.support.clients import As

__all__ = ["Watched", "browser", "page", "programme"]

CODES = Caller(unit="group", client_id="me-test-app", scopes=frozenset({"member_codes:read"}))


def new_phone() -> tuple[str, str]:
    """A fresh mobile number (150-159, uuid digits) as typed, and in E.164."""
    digits = f"15{uuid.uuid4().int % 10**9:09d}"
    return f"{digits[:3]} {digits[3:7]} {digits[7:]}", f"+86{digits}"


@dataclass
class MePage:
    """The page's gateway: its URL, an admin and a till over HTTP, identity over gRPC."""

    url: str  # http://127.0.0.1:<port>/me
    gateway: Gateway
    identity: grpc.aio.Channel

    async def sms_code(self, e164: str, known: int = 0) -> str:
        """The newest sign-in code the development sink holds for a phone, once it holds more
        than `known` (read as an admin reads it: GET /v1/transactionalMessages)."""
        async with await self.gateway.session("group", "admin") as admin:
            for _ in range(200):
                found = await admin.get("/v1/transactionalMessages", params={"phone": e164})
                assert found.status_code == 200, found.text
                messages = found.json()["messages"]
                if len(messages) > known:
                    body: str = messages[0]["body"]
                    return body.split("code is ")[1][:6]
                await asyncio.sleep(0.05)
        raise AssertionError(f"no sign-in code for {e164}")

    async def member_of(self, e164: str) -> str:
        async with await self.gateway.session("group", "admin") as admin:
            found = await admin.get(
                "/v1/members:resolve", params={"identity.type": "phone", "identity.value": e164}
            )
            assert found.status_code == 200, found.text
            name: str = found.json()["member"]["name"]
            return name

    async def member_code(self, member: str) -> str:
        stub = As(member_code_pb2_grpc.MemberCodeServiceStub, self.identity, CODES)
        answer = await stub.GetMemberCode(code_pb.GetMemberCodeRequest(member=member))
        code: str = answer.member_code.code
        return code

    async def earn(self, e164: str, amount: str) -> dict[str, Any]:
        async with await self.gateway.session("mall", "earn") as till:
            answer = await till.post(
                "/v1/purchases:record",
                json={
                    "identity": {"type": "phone", "value": e164},
                    "unit": "mall",
                    "orderId": f"mall-{uuid.uuid4().hex[:8]}",
                    "channel": "CHANNEL_POS",
                    "lines": [{"lineId": "1", "amount": {"currencyCode": "CNY", "amount": amount}}],
                    "requestId": uuid.uuid4().hex,
                },
            )
            assert answer.status_code == 200, answer.text
            found: dict[str, Any] = answer.json()
            return found


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def me_page(
    settings: Settings,
    identity_service: RunningService,
    points_service: RunningService,
    tiers_service: RunningService,
    benefits_service: RunningService,
    insights_service: RunningService,
    engagement_service: RunningService,
    programme: Any,
) -> AsyncIterator[MePage]:
    from loyalty_gateway.app import SPEC as GATEWAY
    from loyalty_identity.app import SPEC as IDENTITY

    runner = ServiceRunner(settings)
    identity = await runner.start(
        IDENTITY, settings.model_copy(update={"engagement_target": engagement_service.target})
    )
    port = free_port()
    gateway = await runner.start(
        GATEWAY,
        settings.model_copy(
            update={
                "gateway_http_port": port,
                "identity_target": identity.target,
                "points_target": points_service.target,
                "tiers_target": tiers_service.target,
                "benefits_target": benefits_service.target,
                "insights_target": insights_service.target,
                "engagement_target": engagement_service.target,
            }
        ),
    )
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as http:
        for _ in range(100):  # uvicorn starts beside the gRPC server
            try:
                await http.get("/openapi.json")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    async with grpc.aio.insecure_channel(identity.target) as channel:
        yield MePage(f"{base}/me", Gateway(gateway, base), channel)
    await runner.stop_all()
