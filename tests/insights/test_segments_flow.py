"""Dynamic segments end to end: events flow in through the real services (a member registers
at the mall, buys at the hotel, withdraws the personalised-offers consent), insights recomputes
the member's figures as they arrive, and the member enters and then leaves a targeting segment
of hotel buyers within seconds, with SegmentEntered / SegmentLeft on the bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import member_pb2
from loyalty.insights.v1 import events_pb2
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings

from tests.insights.conftest import Suite
from tests.support.events import published
from tests.support.segments import Segments, all_of, condition

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def segments(insights_service: RunningService) -> AsyncIterator[Segments]:
    async with grpc.aio.insecure_channel(insights_service.target) as channel:
        yield Segments(channel)


async def member_of(segments: Segments, name: str, member_id: str, wanted: bool) -> float:
    """Seconds until the member is (or is no longer) in the segment; fails after 10."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < 10:
        if (member_id in await segments.members(name)) == wanted:
            return loop.time() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"{member_id} {'never entered' if wanted else 'never left'} {name}")


async def test_a_member_enters_when_buying_and_leaves_when_withdrawing_consent(
    suite: Suite, segments: Segments, settings: Settings
) -> None:
    hotel_buyers = await segments.create(
        all_of(
            condition("UNITS_12M", "CONTAINS_ANY", values=["hotel"]),
            condition("VISITS_12M", "AT_LEAST", "1"),
            condition("REGISTERED_UNIT", "EQUALS", "mall"),
        ),
        targeting=True,
    )
    member = await suite.member(unit="mall")
    await asyncio.sleep(1)
    assert member.id not in await segments.members(hotel_buyers.name)

    await suite.points.earn(member.name, "hotel", "800.00")
    entered_after = await member_of(segments, hotel_buyers.name, member.id, True)
    assert entered_after < 5

    await suite.identity().SetConsents(
        identity_pb.SetConsentsRequest(
            member=member.name,
            request_id=f"consent-{member.id}",
            source="app:privacy-settings",
            changes=[
                member_pb2.ConsentChange(
                    purpose=member_pb2.CONSENT_PURPOSE_PERSONALISED_OFFERS, granted=False
                )
            ],
        )
    )
    left_after = await member_of(segments, hotel_buyers.name, member.id, False)
    assert left_after < 5

    entered = await published(settings, "insights", events_pb2.SegmentEntered, [member.id])
    left = await published(settings, "insights", events_pb2.SegmentLeft, [member.id])
    assert [e.reason for e in entered[member.id] if e.segment == hotel_buyers.name] == ["figures"]
    assert [e.reason for e in left[member.id] if e.segment == hotel_buyers.name] == ["figures"]
