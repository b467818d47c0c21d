"""Badges in segment rules: a badge granted at engagement (BadgeEarned on the bus) puts its
holder into a segment of the badge's holders at insights within seconds; revoked
(BadgeRevoked), the member leaves it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from loyalty.engagement.v1 import challenges_pb2 as cpb
from loyalty.engagement.v1 import challenges_pb2_grpc
from loyalty.engagement.v1 import events_pb2 as engagement_events
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import identity_service_pb2_grpc
from loyalty.insights.v1 import events_pb2 as insights_events
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService

from tests.engagement.conftest import Engagement, catalogue, engagement, rid  # noqa: F401
from tests.points.conftest import ADMIN
from tests.support.clients import As
from tests.support.events import published
from tests.support.segments import Segments, all_of, condition, negated

pytestmark = pytest.mark.asyncio(loop_scope="session")

DESK = Caller(unit="group", client_id="member-desk", scopes=frozenset({"members:manage"}))


@pytest_asyncio.fixture(loop_scope="session")
async def segments(insights_service: RunningService) -> AsyncIterator[Segments]:
    async with grpc.aio.insecure_channel(insights_service.target) as channel:
        yield Segments(channel)


def desk(marketing: Engagement) -> Any:
    return As(challenges_pb2_grpc.ChallengeServiceStub, marketing.channel, DESK)


async def in_segment(segments: Segments, name: str, member_id: str, wanted: bool) -> None:
    deadline = asyncio.get_running_loop().time() + 15
    while asyncio.get_running_loop().time() < deadline:
        if (member_id in await segments.members(name)) == wanted:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{member_id} {'never entered' if wanted else 'never left'} {name}")


async def test_a_granted_badge_puts_its_holder_into_the_segment_and_revoking_takes_it_out(
    engagement: Engagement,  # noqa: F811 (the fixture)
    segments: Segments,
) -> None:
    badge = f"explorer-{uuid.uuid4().hex[:8]}"
    holders = await segments.create(condition("BADGES", "CONTAINS_ANY", values=[badge]))
    # Holders of the badge who do not hold another one: CONTAINS_ALL and not.
    only = await segments.create(
        all_of(
            condition("BADGES", "CONTAINS_ALL", values=[badge]),
            negated(condition("BADGES", "CONTAINS_ANY", values=[f"{badge}-gold"])),
        )
    )
    member_id, other = await engagement.member(), await engagement.member()
    await desk(engagement).GrantBadge(
        cpb.GrantBadgeRequest(
            member=f"members/{member_id}", badge=badge, reason="opening day", request_id=rid()
        )
    )
    await in_segment(segments, holders.name, member_id, True)
    await in_segment(segments, only.name, member_id, True)
    assert other not in await segments.members(holders.name)
    entered = await published(
        engagement.settings, "insights", insights_events.SegmentEntered, [member_id]
    )
    assert holders.name in {e.segment for e in entered[member_id]}

    await desk(engagement).RevokeBadge(
        cpb.RevokeBadgeRequest(
            member=f"members/{member_id}", badge=badge, reason="by mistake", request_id=rid()
        )
    )
    revoked = await published(
        engagement.settings, "engagement", engagement_events.BadgeRevoked, [member_id]
    )
    assert [(e.badge, e.member_id) for e in revoked[member_id]] == [(badge, member_id)]
    await in_segment(segments, holders.name, member_id, False)
    await in_segment(segments, only.name, member_id, False)


async def test_a_merge_gives_the_survivor_the_absorbed_members_badges(
    engagement: Engagement,  # noqa: F811 (the fixture)
    segments: Segments,
) -> None:
    badge = f"founder-{uuid.uuid4().hex[:8]}"
    holders = await segments.create(condition("BADGES", "CONTAINS_ANY", values=[badge]))
    survivor, absorbed = await engagement.member(), await engagement.member()
    await desk(engagement).GrantBadge(
        cpb.GrantBadgeRequest(
            member=f"members/{absorbed}", badge=badge, reason="opening day", request_id=rid()
        )
    )
    await in_segment(segments, holders.name, absorbed, True)
    await As(
        identity_service_pb2_grpc.IdentityServiceStub, engagement.identity_channel, ADMIN
    ).MergeMembers(
        identity_pb.MergeMembersRequest(
            survivor=f"members/{survivor}", absorbed=f"members/{absorbed}", request_id=rid()
        )
    )
    await in_segment(segments, holders.name, survivor, True)
    await in_segment(segments, holders.name, absorbed, False)
