"""Each step once per entry, where the bus cannot be made to misbehave on demand: a crash after
the call to benefits and before the commit, and two consumers handling one event at once. The
use case runs on the running service's own database and peers (`service.root`)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from loyalty.engagement.v1 import engagement_service_pb2 as pb
from loyalty_engagement.bootstrap import Engagement as Root
from loyalty_engagement.domain.journeys import TriggerEvent, TriggerKind
from loyalty_engagement.service_layer import journeys
from loyalty_kit.server import RunningService

from tests.engagement.conftest import Engagement


class Crash(Exception):
    """The process dying between a step's call and the transaction's commit."""


class CrashingAfterCoupon:
    """The service's own peers, dying once right after benefits issued the coupon."""

    def __init__(self, actions: Any) -> None:
        self.actions = actions
        self.keys: list[str] = []

    async def issue_coupon(
        self, member_id: str, template: str, unit: str, key: str, grant_key: str = ""
    ) -> str:
        self.keys.append(key)
        await self.actions.issue_coupon(member_id, template, unit, key, grant_key)
        raise Crash


class Counting:
    """Peers that count the points they award (slowly: the other handler waits meanwhile)."""

    def __init__(self) -> None:
        self.awards: list[str] = []

    async def award_points(
        self, member_id: str, points: int, funding_unit: str, reason: str, key: str
    ) -> str:
        self.awards.append(key)
        await asyncio.sleep(0.2)
        return f"posting-{len(self.awards)}"


async def _tier_journey(engagement: Engagement, tier: str, step: pb.Step) -> pb.Journey:
    return await engagement.journey(
        pb.Journey(
            display_name="exactly once",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_TIER_CHANGED, to_tier=tier),
            steps=[step],
        )
    )


def _event(member_id: str, tier: str) -> TriggerEvent:
    at = datetime.now(UTC)
    return TriggerEvent(
        TriggerKind.TIER_CHANGED,
        member_id,
        f"tier:silver>{tier}@{at.isoformat()}",
        at,
        to_tier=tier,
    )


async def test_a_crash_between_the_coupon_and_the_commit_issues_no_second_coupon(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    root: Root = engagement_service.root
    tier = f"t-{uuid.uuid4().hex[:8]}"
    step = pb.Step(issue_coupon=pb.IssueCoupon(template="test-mall-15", unit="mall"))
    journey = await _tier_journey(engagement, tier, step)
    member_id = await engagement.member()
    event = _event(member_id, tier)
    crashing = CrashingAfterCoupon(root.actions)
    with pytest.raises(Crash):
        async with root.uow() as uow:
            await journeys.on_event(uow, crashing, event, root.clock())  # type: ignore[arg-type]
            await uow.commit()
    assert await engagement.entries(journey.name, member_id) == []  # rolled back
    # Handled again (the event redelivered after the restart): the same call, the same coupon.
    async with root.uow() as uow:
        await journeys.on_event(uow, root.actions, event, root.clock())
        await uow.commit()
    coupons = await engagement.coupons(member_id)
    assert [c.template_code for c in coupons] == ["test-mall-15"]
    (entry,) = await engagement.entries(journey.name, member_id)
    assert [(s.outcome, s.detail) for s in entry.steps] == [("done", coupons[0].code)]
    assert crashing.keys == [f"journey-{entry.name.rsplit('/', 1)[-1]}-0"]


async def test_two_consumers_handling_one_event_at_once_act_once(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    root: Root = engagement_service.root
    tier = f"t-{uuid.uuid4().hex[:8]}"
    step = pb.Step(award_points=pb.AwardPoints(points=5, funding_unit="mall"))
    journey = await _tier_journey(engagement, tier, step)
    member_id = f"{uuid.uuid4()}"
    event = _event(member_id, tier)
    counting = Counting()

    async def handle() -> None:
        async with root.uow() as uow:
            await journeys.on_event(uow, counting, event, root.clock())  # type: ignore[arg-type]
            await uow.commit()

    await asyncio.gather(handle(), handle())
    assert len(counting.awards) == 1
    (entry,) = await engagement.entries(journey.name, member_id)
    assert entry.state == pb.ENTRY_STATE_COMPLETED
