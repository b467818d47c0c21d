"""The welcome gift on an upgrade as a journey (today's fixed trigger in benefits, moved): the
journey's coupon step carries benefits' grant key `welcome:{tier}`, so while benefits' own
trigger still runs (a rolling upgrade; the tests keep it on) the member gets one coupon, not
one from each."""

from __future__ import annotations

from datetime import UTC, datetime

from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.engagement.v1 import engagement_service_pb2 as pb

from tests.engagement.conftest import Engagement, until
from tests.engagement.test_journeys import tier_changed
from tests.support.events import publish

# The reasons of an upgrade (not "carried_over": a legacy tier an import brought; nor
# "downgraded"), as in the demo's journeys.
WELCOMED = ("qualified", "granted", "membership_purchased")


def welcome_gift(tier: str, template: str) -> pb.Journey:
    """What the demo ships for each tier of the ladder with a welcome coupon."""
    return pb.Journey(
        display_name=f"upgrade to {tier}: welcome gift",
        trigger=pb.Trigger(kind=pb.TRIGGER_KIND_TIER_CHANGED, to_tier=tier, reasons=list(WELCOMED)),
        steps=[
            pb.Step(issue_coupon=pb.IssueCoupon(template=template, grant_key=f"welcome:{tier}"))
        ],
    )


async def test_an_upgrade_grants_one_welcome_coupon_with_the_journey_and_benefits_both_on(
    engagement: Engagement,
) -> None:
    journey = await engagement.journey(welcome_gift("gold", "welcome-gold"))
    member_id = await engagement.member("mall")

    await publish(engagement.settings, "tiers", tier_changed(member_id, "gold", datetime.now(UTC)))

    entries = await until(
        lambda: engagement.entries(journey.name, member_id),
        lambda e: bool(e) and e[0].state == pb.ENTRY_STATE_COMPLETED,
    )
    assert [e.state for e in entries] == [pb.ENTRY_STATE_COMPLETED], entries
    # Benefits handles the same event on its own; give it the time to (it grants first or
    # second: the grant key makes the other one answer with that coupon).
    coupons: list[benefits_pb.Coupon] = await until(
        lambda: engagement.coupons(member_id), lambda c: len(c) > 1, seconds=2
    )
    assert [c.template_code for c in coupons] == ["welcome-gold"]
    assert entries[0].steps[0].detail == coupons[0].code


async def test_a_tier_carried_over_by_an_import_gets_no_welcome_gift_from_the_journey(
    engagement: Engagement,
) -> None:
    journey = await engagement.journey(welcome_gift("gold", "welcome-gold"))
    imported = await engagement.member("mall")
    upgraded = await engagement.member("mall")
    carried = tier_changed(imported, "gold", datetime.now(UTC))
    carried.reason = "carried_over"
    await publish(engagement.settings, "tiers", carried)
    await publish(engagement.settings, "tiers", tier_changed(upgraded, "gold", datetime.now(UTC)))

    # The later event's entry shows the earlier one was handled (one consumer, in order).
    entries = await until(
        lambda: engagement.entries(journey.name),
        lambda e: upgraded in {x.member_id for x in e},
    )
    assert imported not in {e.member_id for e in entries}
    assert await engagement.coupons(imported) == []
