"""The segments a member is in now, over a real gRPC channel (the console's member 360): by
ID in pages tied to the member and the caller's unit; a unit's team sees its own unit's."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from google.protobuf.field_mask_pb2 import FieldMask
from loyalty.insights.v1 import segments_pb2 as pb
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService

from tests.support.clock import Clock
from tests.support.rpc import fails
from tests.support.segments import GROUP_MARKETING, Figures, Segments, condition, unit_marketing

pytestmark = pytest.mark.asyncio(loop_scope="session")

HOTEL = unit_marketing("hotel", "insights:read", "segments:write")


@pytest_asyncio.fixture(loop_scope="session")
async def segments(insights_service: RunningService) -> AsyncIterator[Segments]:
    async with grpc.aio.insecure_channel(insights_service.target) as channel:
        yield Segments(channel)


@pytest.fixture
def figures(insights_service: RunningService, clock: Clock) -> Figures:
    return Figures(insights_service, clock)


async def member_segments(
    segments: Segments, member_id: str, caller: Caller = GROUP_MARKETING, page_size: int = 1
) -> list[str]:
    found: list[str] = []
    request = pb.ListMemberSegmentsRequest(member=f"members/{member_id}", page_size=page_size)
    for _ in range(100):
        page = await segments.api(caller).ListMemberSegments(request)
        assert len(page.segments) <= page_size
        found += [s.name for s in page.segments]
        if not page.next_page_token:
            return found
        request.page_token = page.next_page_token
    raise AssertionError("the pages never ended")


async def test_a_members_segments_are_those_it_is_in_now(
    segments: Segments, figures: Figures
) -> None:
    gold = await figures.put(tier="gold")
    silver = await figures.put(tier="silver")
    all_mine = await segments.create(figures.mine())
    golden = await segments.create(figures.mine(condition("TIER", "EQUALS", "gold")))
    at_hotel = await segments.create(figures.mine(), caller=HOTEL)
    platinum = await segments.create(figures.mine(condition("TIER", "EQUALS", "platinum")))

    assert await member_segments(segments, gold) == sorted(
        [all_mine.name, golden.name, at_hotel.name]
    )
    assert await member_segments(segments, silver, page_size=200) == sorted(
        [all_mine.name, at_hotel.name]
    )
    page = await segments.api().ListMemberSegments(
        pb.ListMemberSegmentsRequest(member=f"members/{gold}", page_size=200)
    )
    assert {s.name: s.unit for s in page.segments}[at_hotel.name] == "hotel"
    assert platinum.name not in [s.name for s in page.segments]
    # A unit's team sees the member's segments of its own unit only.
    assert await member_segments(segments, gold, HOTEL) == [at_hotel.name]

    # The member leaves a segment whose rule changes, and is in none of a deleted one.
    await segments.api().UpdateSegment(
        pb.UpdateSegmentRequest(
            segment=pb.Segment(
                name=golden.name, rule=figures.mine(condition("TIER", "EQUALS", "diamond"))
            ),
            update_mask=FieldMask(paths=["rule"]),
            request_id=uuid.uuid4().hex,
        )
    )
    await segments.api().DeleteSegment(
        pb.DeleteSegmentRequest(name=all_mine.name, request_id=uuid.uuid4().hex)
    )
    assert await member_segments(segments, gold) == [at_hotel.name]
    # A member insights has no figures of is in no segment.
    assert await member_segments(segments, str(uuid.uuid4())) == []


async def test_member_segment_pages_are_tied_to_the_member_and_the_caller(
    segments: Segments, figures: Figures
) -> None:
    member = await figures.put(tier="gold")
    for _ in range(2):
        await segments.create(figures.mine())
    first = await segments.api().ListMemberSegments(
        pb.ListMemberSegmentsRequest(member=f"members/{member}", page_size=1)
    )
    assert first.next_page_token
    token = first.next_page_token
    mine = f"members/{member}"
    for caller, request in (
        # another member's list, the hotel team's list, a token no list gave
        (GROUP_MARKETING, pb.ListMemberSegmentsRequest(member=f"members/{uuid.uuid4()}")),
        (HOTEL, pb.ListMemberSegmentsRequest(member=mine, page_token=token)),
        (GROUP_MARKETING, pb.ListMemberSegmentsRequest(member=mine, page_token="bm90IGEgdG9rZW4")),
    ):
        if not request.page_token:
            request.page_token = token
        refused = await fails(segments.api(caller).ListMemberSegments(request))
        assert (refused.code, refused.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["page_token"])
    for request in (
        pb.ListMemberSegmentsRequest(member="people/1"),
        pb.ListMemberSegmentsRequest(member=f"members/{member}", page_size=-1),
    ):
        refused = await fails(segments.api().ListMemberSegments(request))
        assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.fields in (["member"], ["page_size"])
    no_scope = unit_marketing("hotel")
    refused = await fails(
        segments.api(no_scope).ListMemberSegments(
            pb.ListMemberSegmentsRequest(member=f"members/{member}")
        )
    )
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED")
