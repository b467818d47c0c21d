from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest_asyncio
from loyalty.identity.v1 import identity_service_pb2_grpc
from loyalty_kit.caller import PERSONAL_DATA_READ, Caller
from loyalty_kit.server import RunningService

from tests.support.clients import As

MALL_POS = Caller(unit="mall", client_id="mall-pos", scopes=frozenset({"earn"}))
HOTEL_POS = Caller(unit="hotel", client_id="hotel-pms", scopes=frozenset({"earn"}))
CINEMA_POS = Caller(unit="cinema", client_id="cinema-pos", scopes=frozenset({"earn"}))
ADMIN = Caller(unit="group", client_id="identity-admin", scopes=frozenset({"admin"}))
# Lists segments for campaigns: member operations without personal data.
MARKETING = Caller(unit="group", client_id="crm", scopes=frozenset({"members:manage"}))
# The member app: the member's own profile and consents.
MEMBER_APP = Caller(unit="group", client_id="member-app", scopes=frozenset({"profile:write"}))
SERVICE_DESK = Caller(
    unit="mall", client_id="service-desk", scopes=frozenset({PERSONAL_DATA_READ, "members:manage"})
)


@dataclass
class IdentityClient:
    """A generated stub over a real channel, calling as a given business-unit client."""

    service: RunningService
    channel: grpc.aio.Channel

    def as_(self, caller: Caller) -> Any:
        return As(identity_service_pb2_grpc.IdentityServiceStub, self.channel, caller)


@pytest_asyncio.fixture(loop_scope="session")
async def identity(identity_service: RunningService) -> AsyncIterator[IdentityClient]:
    async with grpc.aio.insecure_channel(identity_service.target) as channel:
        yield IdentityClient(identity_service, channel)
