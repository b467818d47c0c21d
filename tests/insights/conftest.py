from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import grpc
import pytest_asyncio
from loyalty.common.v1 import channel_pb2
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty.insights.v1 import insights_service_pb2_grpc
from loyalty_kit import events
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp

from tests.points.conftest import ADMIN, Points, programme  # noqa: F401 (fixture)
from tests.support.clients import As
from tests.support.clock import Clock

GROUP_TEAM = Caller(unit="group", client_id="group-insights", scopes=frozenset({"insights:group"}))

T = TypeVar("T")


def unit_team(unit: str) -> Caller:
    """A unit's loyalty team: its own unit's figures."""
    return Caller(unit=unit, client_id=f"{unit}-insights", scopes=frozenset({"insights:read"}))


def period(start: datetime, end: datetime) -> dict[str, Any]:
    return {"start_time": timestamp(start), "end_time": timestamp(end)}


@dataclass
class Member:
    name: str  # "members/{id}"
    phone: str

    @property
    def id(self) -> str:
        return self.name.removeprefix("members/")


@dataclass
class Suite:
    points: Points
    insights_channel: grpc.aio.Channel
    clock: Clock

    def insights(self, caller: Caller = GROUP_TEAM) -> Any:
        return As(insights_service_pb2_grpc.InsightsServiceStub, self.insights_channel, caller)

    def identity(self) -> Any:
        return As(
            identity_service_pb2_grpc.IdentityServiceStub, self.points.identity_channel, ADMIN
        )

    async def member(self, unit: str = "mall") -> Member:
        phone = f"136{uuid.uuid4().int % 10**8:08d}"
        response = await self.identity().RegisterMember(
            identity_pb.RegisterMemberRequest(
                request_id=uuid.uuid4().hex,
                unit=unit,
                channel=channel_pb2.CHANNEL_POS,
                identities=[member_pb2.Identity(type="phone", value=phone)],
            )
        )
        return Member(str(response.member.name), phone)


async def until(
    ask: Callable[[], Awaitable[T]], holds: Callable[[T], bool], seconds: float = 20
) -> T:
    """What `ask` answers once `holds` (the facts follow the events: a moment late); the last
    answer when it never does, for the test's assertion to show."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        found = await ask()
        if holds(found) or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.1)


async def caught_up(service: RunningService, seconds: float = 30) -> None:
    """Until insights and tiers (whose tier changes insights follows) have handled every event
    on the bus, twice in a row: what a test that compares figures computed at two moments waits
    for (an event of an earlier test handled between them moves the quintiles)."""
    js, namespace = service.context.js, service.context.settings.event_namespace
    assert js is not None
    deadline = asyncio.get_running_loop().time() + seconds
    quiet = 0
    while quiet < 2 and asyncio.get_running_loop().time() < deadline:
        lags = await events.consumer_lag(js, namespace)
        busy = [
            lag for lag in lags if lag.consumer.startswith(("insights", "tiers")) and lag.behind
        ]
        quiet = 0 if busy else quiet + 1
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture(loop_scope="session")
async def suite(
    points_service: RunningService,
    identity_service: RunningService,
    insights_service: RunningService,
    programme: Any,  # noqa: F811
    clock: Clock,
) -> AsyncIterator[Suite]:
    async with (
        grpc.aio.insecure_channel(points_service.target) as points_channel,
        grpc.aio.insecure_channel(identity_service.target) as identity_channel,
        grpc.aio.insecure_channel(insights_service.target) as insights_channel,
    ):
        yield Suite(
            Points(points_channel, identity_channel, points_service), insights_channel, clock
        )
