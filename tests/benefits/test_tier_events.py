"""TierChanged as the benefits service learns it: duplicates, replays, late and downward
changes, published straight onto the tiers stream."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty.tiers.v1 import events_pb2 as tier_events
from loyalty_kit.timestamps import timestamp

from tests.benefits.conftest import APP, Benefits
from tests.support.events import publish

pytestmark = pytest.mark.asyncio(loop_scope="session")


def changed(member_id: str, before: str, after: str, at: datetime) -> tier_events.TierChanged:
    return tier_events.TierChanged(
        member_id=member_id,
        from_tier=before,
        to_tier=after,
        reason="qualified",
        effective_at=timestamp(at),
        tier_year_end=timestamp(at + timedelta(days=365)),
    )


async def coupons_of(benefits: Benefits, member: str) -> list[tuple[str, str]]:
    listed = await benefits.as_(APP).ListCoupons(pb.ListCouponsRequest(member=member))
    return [(c.template_code, c.source) for c in listed.coupons]


async def tier_becomes(benefits: Benefits, member: str, tier: str) -> None:
    for _ in range(200):
        if (await benefits.entitlements(member)).tier == tier:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{member} never became {tier}")


async def test_a_redelivered_or_replayed_upgrade_grants_the_welcome_gift_once(
    benefits: Benefits,
) -> None:
    member_id = str(uuid.uuid4())
    member = f"members/{member_id}"
    now = datetime.now(UTC)
    event_id = await publish(benefits.settings, "tiers", changed(member_id, "silver", "gold", now))
    await publish(benefits.settings, "tiers", changed(member_id, "silver", "gold", now), event_id)
    await publish(benefits.settings, "tiers", changed(member_id, "silver", "gold", now))  # replay
    await tier_becomes(benefits, member, "gold")
    await asyncio.sleep(0.3)  # the duplicates have been handled by now
    assert await coupons_of(benefits, member) == [("welcome-gold", "welcome:gold")]


async def test_a_downgrade_grants_nothing_and_a_late_older_change_is_ignored(
    benefits: Benefits,
) -> None:
    member_id = str(uuid.uuid4())
    member = f"members/{member_id}"
    now = datetime.now(UTC)
    await publish(benefits.settings, "tiers", changed(member_id, "gold", "silver", now))
    await tier_becomes(benefits, member, "silver")
    # The upgrade to gold of a year ago arrives only now: the member stays silver.
    await publish(
        benefits.settings, "tiers", changed(member_id, "silver", "gold", now - timedelta(days=365))
    )
    marker = str(uuid.uuid4())  # an event after it, to know it has been handled
    await publish(benefits.settings, "tiers", changed(marker, "", "basic", now))
    await tier_becomes(benefits, f"members/{marker}", "basic")
    assert (await benefits.entitlements(member)).tier == "silver"
    assert await coupons_of(benefits, member) == []
