"""The engagement service with the benefits catalogue of the benefits tests, the identity,
points and benefits services of the run, and clients calling as a unit's marketing team."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import pytest_asyncio
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.benefits.v1 import benefits_service_pb2_grpc
from loyalty.common.v1 import channel_pb2
from loyalty.engagement.v1 import engagement_service_pb2 as pb
from loyalty.engagement.v1 import engagement_service_pb2_grpc
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings

from tests.benefits.conftest import catalogue
from tests.points.conftest import ADMIN, programme
from tests.support.clients import As

__all__ = ["catalogue", "programme"]

T = TypeVar("T")
GROUP_MARKETING = Caller(
    unit="group", client_id="group-crm", scopes=frozenset({"engagement:write"})
)


def rid() -> str:
    return uuid.uuid4().hex


async def until(
    ask: Callable[[], Awaitable[T]], holds: Callable[[T], bool], seconds: float = 20
) -> T:
    """What `ask` answers once `holds`; the last answer when it never does (for the test's
    assertion to show)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        found = await ask()
        if holds(found) or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.1)


@dataclass
class Engagement:
    channel: grpc.aio.Channel
    identity_channel: grpc.aio.Channel
    points_channel: grpc.aio.Channel
    benefits_channel: grpc.aio.Channel
    settings: Settings
    made: list[str] = field(default_factory=list)

    def as_(self, caller: Caller = GROUP_MARKETING) -> Any:
        return As(engagement_service_pb2_grpc.EngagementServiceStub, self.channel, caller)

    async def journey(self, journey: pb.Journey) -> pb.Journey:
        """An active journey (paused again when the test ends: other tests' members' events
        must not keep entering it)."""
        if journey.state == pb.JOURNEY_STATE_UNSPECIFIED:
            journey.state = pb.JOURNEY_STATE_ACTIVE
        response = await self.as_().CreateJourney(
            pb.CreateJourneyRequest(journey=journey, request_id=rid())
        )
        self.made.append(response.journey.name)
        created: pb.Journey = response.journey
        return created

    async def entries(self, journey: str, member_id: str = "") -> list[pb.JourneyEntry]:
        response = await self.as_().ListJourneyEntries(
            pb.ListJourneyEntriesRequest(journey=journey, page_size=200)
        )
        return [e for e in response.entries if not member_id or e.member_id == member_id]

    async def messages(self, member_id: str) -> list[pb.SentMessage]:
        response = await self.as_().ListMessages(pb.ListMessagesRequest(member_id=member_id))
        return list(response.messages)

    async def member(
        self, unit: str = "mall", *consents: member_pb2.ConsentPurpose.ValueType
    ) -> str:
        """A newly registered member's ID, with these consents granted."""
        response = await As(
            identity_service_pb2_grpc.IdentityServiceStub, self.identity_channel, ADMIN
        ).RegisterMember(
            identity_pb.RegisterMemberRequest(
                request_id=rid(),
                unit=unit,
                channel=channel_pb2.CHANNEL_POS,
                identities=[
                    member_pb2.Identity(type="phone", value=f"135{uuid.uuid4().int % 10**8:08d}")
                ],
                consents=[member_pb2.ConsentChange(purpose=p, granted=True) for p in consents],
            )
        )
        return str(response.member.name).removeprefix("members/")

    async def tags(self, member_id: str) -> list[str]:
        response = await As(
            identity_service_pb2_grpc.IdentityServiceStub, self.identity_channel, ADMIN
        ).GetMember(identity_pb.GetMemberRequest(name=f"members/{member_id}"))
        return list(response.member.tags)

    async def coupons(self, member_id: str) -> list[benefits_pb.Coupon]:
        response = await As(
            benefits_service_pb2_grpc.BenefitsServiceStub, self.benefits_channel, ADMIN
        ).ListCoupons(benefits_pb.ListCouponsRequest(member=f"members/{member_id}"))
        return list(response.coupons)

    async def postings(self, member_id: str) -> list[points_pb.Posting]:
        response = await As(
            points_service_pb2_grpc.PointsServiceStub, self.points_channel, ADMIN
        ).ListPostings(points_pb.ListPostingsRequest(member=f"members/{member_id}"))
        return list(response.postings)


@pytest_asyncio.fixture(loop_scope="session")
async def engagement(
    engagement_service: RunningService,
    identity_service: RunningService,
    points_service: RunningService,
    benefits_service: RunningService,
    catalogue: Any,
    programme: Any,
) -> AsyncIterator[Engagement]:
    async with (
        grpc.aio.insecure_channel(engagement_service.target) as channel,
        grpc.aio.insecure_channel(identity_service.target) as identity_channel,
        grpc.aio.insecure_channel(points_service.target) as points_channel,
        grpc.aio.insecure_channel(benefits_service.target) as benefits_channel,
    ):
        client = Engagement(
            channel,
            identity_channel,
            points_channel,
            benefits_channel,
            engagement_service.context.settings,
        )
        yield client
        for name in client.made:
            with contextlib.suppress(grpc.aio.AioRpcError):  # paused already
                await client.as_().PauseJourney(pb.PauseJourneyRequest(name=name, request_id=rid()))
