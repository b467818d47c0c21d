"""Campaigns for badge holders over real channels: engagement grants the Explorer badge by hand
(BadgeEarned on the bus), points learns it, and the demo programme's "explorer-bonus" (x1.5 at
every unit for Explorer holders) applies to the holder's purchases, not to others'; revoked
(BadgeRevoked), purchases since earn single again, while one made while it was held still earns
the bonus."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from loyalty.engagement.v1 import challenges_pb2 as cpb
from loyalty.engagement.v1 import challenges_pb2_grpc
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty_devstack.demo import huayue_programme
from loyalty_kit.caller import Caller

from tests.engagement.conftest import Engagement, catalogue, engagement, rid, until  # noqa: F401
from tests.points.conftest import ADMIN, Points, at, line
from tests.support.clients import As
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

DESK = Caller(unit="group", client_id="member-desk", scopes=frozenset({"members:manage"}))


def desk(marketing: Engagement) -> Any:
    return As(challenges_pb2_grpc.ChallengeServiceStub, marketing.channel, DESK)


async def preview(points: Points, member: str, occur: datetime | None = None) -> int:
    """The points 100.00 at the mall would earn the member (made at `occur`, else now)."""
    request = pb.PreviewEarnRequest(member=member, unit="mall", lines=[line("100.00")])
    if occur is not None:
        request.occur_time.CopyFrom(at(occur.isoformat()))
    response = await points.as_().PreviewEarn(request)
    return int(response.breakdown.points)


async def test_explorers_earn_the_bonus_while_they_hold_the_badge(
    engagement: Engagement,  # noqa: F811 (the fixture)
    points: Points,
) -> None:
    explorer_id, other_id = await engagement.member(), await engagement.member()
    explorer, other = f"members/{explorer_id}", f"members/{other_id}"
    await desk(engagement).GrantBadge(
        cpb.GrantBadgeRequest(member=explorer, badge="explorer", reason="pilot", request_id=rid())
    )
    assert await until(lambda: preview(points, explorer), lambda p: p == 150) == 150

    held = await points.earn(explorer, "mall", "100.00")
    assert held.posting.points == 150
    assert [(f.source, f.multiplier) for f in held.posting.breakdown.multipliers] == [
        ("unit:mall", "1"),
        ("campaign:explorer-bonus", "1.5"),
    ]
    assert (await points.earn(other, "mall", "100.00")).posting.points == 100

    while_held = datetime.now(UTC)
    await desk(engagement).RevokeBadge(
        cpb.RevokeBadgeRequest(member=explorer, badge="explorer", reason="test", request_id=rid())
    )
    assert await until(lambda: preview(points, explorer), lambda p: p == 100) == 100
    assert (await points.earn(explorer, "mall", "100.00")).posting.points == 100
    # A receipt of a purchase made while the member held the badge, recorded late: the bonus.
    late = await points.earn(explorer, "mall", "100.00", occur=while_held.isoformat())
    assert late.posting.points == 150


async def test_a_malformed_badge_code_is_refused_with_its_field(points: Points) -> None:
    programme = huayue_programme()
    programme.ClearField("effective_from")  # from now: only the badge code is wrong
    campaign = programme.campaigns.add()
    campaign.CopyFrom(programme.campaigns[0])
    campaign.code = "bad-badges"
    campaign.badges[:] = ["explorer", "Not A Badge"]
    failure = await fails(
        points.as_(ADMIN).UpdateProgramme(
            pb.UpdateProgrammeRequest(programme=programme, reason="tests", request_id=rid())
        )
    )
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    index = len(programme.campaigns) - 1
    assert f"programme.campaigns[{index}].badges[1]" in failure.fields
