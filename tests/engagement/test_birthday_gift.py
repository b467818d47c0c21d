"""The birthday gift as the demo ships it, a journey (benefits' fixed birthday job is off by
default): a member of a tier with the gift, whose birthday is today, gets the coupon once,
however often the daily sweep runs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.benefits.v1 import benefits_service_pb2_grpc
from loyalty.engagement.v1 import engagement_service_pb2 as pb
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty_benefits.bootstrap import BenefitsSettings
from loyalty_devstack.demo import huayue
from loyalty_engagement.bootstrap import Engagement as Root
from loyalty_engagement.service_layer import timer
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp

from tests.engagement.conftest import Engagement, until
from tests.engagement.test_journeys import tier_changed
from tests.engagement.test_timing import birthday_month_of
from tests.points.conftest import ADMIN
from tests.support.clients import As
from tests.support.events import publish


def _demo_birthday_journey() -> pb.Journey:
    """huayue.yaml's birthday journey, issuing the test catalogue's coupon (the demo's
    `birthday-gift` template is not in it), in UTC (today is the test's day)."""
    [journey] = [j for j in huayue().journeys or [] if j.key == "birthday-gift"]
    copy = pb.Journey()
    copy.CopyFrom(journey)
    copy.ClearField("key")  # keys are unique: the test's own journey has none
    assert copy.steps[0].issue_coupon.template == "birthday-gift"
    copy.steps[0].issue_coupon.template = "test-mall-15"
    copy.steps[0].issue_coupon.unit = "mall"
    copy.time_zone = "UTC"
    return copy


async def test_a_member_whose_birthday_is_today_gets_the_coupon_once_via_the_journey(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    assert BenefitsSettings.model_fields["fixed_birthday_gifts"].default is False
    root: Root = engagement_service.root
    member_id = await engagement.member()
    now = datetime.now(UTC)
    await publish(engagement.settings, "tiers", tier_changed(member_id, "gold", now))
    await _born_today(engagement, root, member_id, now)
    journey = await engagement.journey(_demo_birthday_journey())
    assert journey.trigger.kind == pb.TRIGGER_KIND_BIRTHDAY
    # The service's own timer (every second in the tests) sweeps today's birthdays.
    # (benefits' fixed welcome gift, on in the tests, gives the gold member its coupon too)
    coupons = await until(lambda: _gifts(engagement, member_id), lambda found: len(found) >= 1)
    assert len(coupons) == 1
    # The sweep again, twice at once, and the due entries run again: nothing more.
    await asyncio.gather(timer.sweep(root.uow, root.clock), timer.sweep(root.uow, root.clock))
    await timer.run_due(root.uow, root.actions, root.clock)
    [entry] = await engagement.entries(journey.name, member_id)
    assert entry.state == pb.ENTRY_STATE_COMPLETED
    assert entry.trigger_key == f"birthday:{now.year}"
    assert len(await _gifts(engagement, member_id)) == 1


async def test_a_birthday_coupon_benefits_granted_this_year_is_not_given_again(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    """Benefits' fixed gift and the journey share the grant key "birthday:{year}": whichever
    comes first, the member has one coupon this year."""
    root: Root = engagement_service.root
    member_id = await engagement.member()
    now = datetime.now(UTC)
    await publish(engagement.settings, "tiers", tier_changed(member_id, "gold", now))
    await As(
        benefits_service_pb2_grpc.BenefitsServiceStub, engagement.benefits_channel, ADMIN
    ).IssueCoupons(
        benefits_pb.IssueCouponsRequest(
            template="test-mall-15",
            request_id=str(uuid.uuid4()),
            members=[f"members/{member_id}"],
            grant_key=f"birthday:{now.year}",
        )
    )
    await _born_today(engagement, root, member_id, now)
    journey = await engagement.journey(_demo_birthday_journey())
    entries = await until(
        lambda: engagement.entries(journey.name, member_id),
        lambda found: [e.state for e in found] == [pb.ENTRY_STATE_COMPLETED],
    )
    assert entries[0].trigger_key == f"birthday:{now.year}"
    assert len(await _gifts(engagement, member_id)) == 1


async def _born_today(engagement: Engagement, root: Root, member_id: str, now: datetime) -> None:
    """The member's birthday is today, as engagement knows it before the journey exists (a
    journey's sweep takes a day's birthdays once: one recorded after it waits a year)."""
    await publish(
        engagement.settings,
        "identity",
        identity_events.ProfileChanged(
            member_id=member_id,
            changed_fields=["birthday"],
            birthday_month=now.month,
            birthday_day=now.day,
            changed_at=timestamp(now),
        ),
    )
    await until(lambda: birthday_month_of(root, member_id), lambda found: found == now.month)


async def _gifts(engagement: Engagement, member_id: str) -> list[str]:
    """The member's coupons of the journey's template."""
    return [
        c.name for c in await engagement.coupons(member_id) if c.template_code == "test-mall-15"
    ]


async def test_a_member_of_a_tier_without_the_gift_gets_none(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    root: Root = engagement_service.root
    member_id = await engagement.member()
    now = datetime.now(UTC)
    await _born_today(engagement, root, member_id, now)
    journey = await engagement.journey(_demo_birthday_journey())
    entries = await until(
        lambda: engagement.entries(journey.name, member_id), lambda found: len(found) >= 1
    )
    await timer.run_due(root.uow, root.actions, root.clock)
    assert [e.state for e in await engagement.entries(journey.name, member_id)] != []
    assert entries and await _gifts(engagement, member_id) == []
