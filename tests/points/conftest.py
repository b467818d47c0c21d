from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.common.v1 import channel_pb2, money_pb2
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty_devstack.demo import huayue_programme
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService

from tests.support.clients import As

ADMIN = Caller(unit="group", client_id="points-admin", scopes=frozenset({"admin"}))
HOTEL = Caller(unit="hotel", client_id="hotel-pms", scopes=frozenset({"earn", "redeem"}))
DESK = Caller(unit="mall", client_id="service-desk", scopes=frozenset({"points:adjust"}))


def pos(unit: str) -> Caller:
    """A unit's till: it earns and redeems for that unit only."""
    return Caller(unit=unit, client_id=f"{unit}-pos", scopes=frozenset({"earn", "redeem"}))


def till_of(request: Any) -> Caller:
    """The till of the unit a request names (the hotel's for requests without a unit)."""
    unit = request.unit if "unit" in request.DESCRIPTOR.fields_by_name else ""
    return pos(unit) if unit else HOTEL


def rid() -> str:
    return uuid.uuid4().hex


def at(text: str) -> Timestamp:
    stamp = Timestamp()
    stamp.FromJsonString(text)
    return stamp


def line(amount: str, line_id: str = "1", currency: str = "CNY") -> pb.OrderLine:
    return pb.OrderLine(
        line_id=line_id, amount=money_pb2.Money(currency_code=currency, amount=amount), quantity=1
    )


@dataclass
class Points:
    points_channel: grpc.aio.Channel
    identity_channel: grpc.aio.Channel
    service: RunningService

    def as_(self, caller: Caller | None = None) -> Any:
        """The points service called as `caller`, by default the till of each request's unit."""
        return As(points_service_pb2_grpc.PointsServiceStub, self.points_channel, caller or till_of)

    def identity(self, caller: Caller = ADMIN) -> Any:
        return As(identity_service_pb2_grpc.IdentityServiceStub, self.identity_channel, caller)

    async def member(self) -> str:
        """A newly registered member's resource name."""
        response = await self.identity().RegisterMember(
            identity_pb.RegisterMemberRequest(
                request_id=rid(),
                unit="mall",
                channel=channel_pb2.CHANNEL_POS,
                identities=[
                    member_pb2.Identity(type="phone", value=f"137{uuid.uuid4().int % 10**8:08d}")
                ],
            )
        )
        return str(response.member.name)

    async def earn(
        self,
        member: str,
        unit: str,
        *amounts: str,
        order_id: str | None = None,
        occur: str | None = None,
        caller: Caller | None = None,
    ) -> pb.EarnPointsResponse:
        request = pb.EarnPointsRequest(
            member=member,
            request_id=rid(),
            unit=unit,
            channel=channel_pb2.CHANNEL_POS,
            order_id=order_id or f"ord-{uuid.uuid4().hex[:10]}",
            lines=[line(a, str(i + 1)) for i, a in enumerate(amounts)],
        )
        if occur:
            request.occur_time.CopyFrom(at(occur))
        response: pb.EarnPointsResponse = await self.as_(caller or pos(unit)).EarnPoints(request)
        return response

    async def balance(self, member: str) -> pb.Balance:
        response = await self.as_().GetBalance(pb.GetBalanceRequest(member=member))
        balance: pb.Balance = response.balance
        return balance


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def programme(points_service: RunningService) -> Any:
    """The Huayue programme of docs/worked-example.md, version 1, effective since 2020."""
    async with grpc.aio.insecure_channel(points_service.target) as channel:
        stub = As(points_service_pb2_grpc.PointsServiceStub, channel, ADMIN)
        response = await stub.UpdateProgramme(
            pb.UpdateProgrammeRequest(
                programme=huayue_programme(), reason="tests", request_id="tests-programme-v1"
            )
        )
    return response


@pytest_asyncio.fixture(loop_scope="session")
async def points(
    points_service: RunningService, identity_service: RunningService, programme: Any
) -> AsyncIterator[Points]:
    async with (
        grpc.aio.insecure_channel(points_service.target) as points_channel,
        grpc.aio.insecure_channel(identity_service.target) as identity_channel,
    ):
        yield Points(points_channel, identity_channel, points_service)
