"""The member page at /me in Chromium (the console's browser fixtures), against the session's
gateway: the session's identity sends sign-in codes through the session's engagement, so they
land in its development sink."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest_asyncio
from loyalty.identity.v1 import member_code_pb2 as code_pb
from loyalty.identity.v1 import member_code_pb2_grpc
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
    """A fresh mobile number (15x but 154, no mobile prefix; uuid digits) as typed, and in
    E.164."""
    number = uuid.uuid4().int
    digits = f"15{'012356789'[number % 9]}{number // 9 % 10**8:08d}"
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
    gateway_service: RunningService,
    programme: Any,
) -> AsyncIterator[MePage]:
    base = f"http://127.0.0.1:{settings.gateway_http_port}"
    async with grpc.aio.insecure_channel(identity_service.target) as channel:
        yield MePage(f"{base}/me", Gateway(gateway_service, base), channel)
