"""A merge undone at the identity service: the restored member's coupons, quota used and
reward redemptions go back to it, the survivor keeps its own, and the restored id is served
again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from loyalty.benefits.v1 import benefits_service_pb2 as pb

from tests.benefits.conftest import Benefits
from tests.benefits.test_members import codes_of, eventually
from tests.benefits.test_tier_events import changed
from tests.points.test_unmerge import member_with_phone, merge, unmerge
from tests.support.events import publish

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def drink_used(benefits: Benefits, member: str) -> int:
    listed = (await benefits.entitlements(member, "hotel")).entitlements
    return next(e.used for e in listed if e.benefit.code == "test-hotel-welcome-drink")


async def test_an_unmerge_gives_the_coupons_and_the_quota_back(benefits: Benefits) -> None:
    survivor, _ = await member_with_phone(benefits.points)
    restored, phone = await member_with_phone(benefits.points)
    # Both were gold once: each has gold's welcome gift (a grant given once per member).
    for member in (survivor, restored):
        await publish(
            benefits.settings,
            "tiers",
            changed(member.split("/")[1], "silver", "gold", datetime.now(UTC)),
        )
    for member in (survivor, restored):
        await benefits.tier_learned(member, "gold")
    own = [await codes_of(benefits, m) for m in (survivor, restored)]
    await benefits.consume(survivor, "test-hotel-welcome-drink")
    await benefits.consume(restored, "test-hotel-welcome-drink")
    await merge(benefits.points, survivor, restored)

    async def merged() -> bool:
        return await codes_of(benefits, survivor) == sorted(own[0] + own[1])

    await eventually(merged)
    assert await drink_used(benefits, survivor) == 2

    await unmerge(benefits.points, survivor, restored, phone)

    async def unmerged() -> bool:
        try:
            return await codes_of(benefits, restored) == own[1]
        except Exception:
            return False  # MEMBER_MERGED until the unmerge arrives

    await eventually(unmerged)
    assert await codes_of(benefits, survivor) == own[0]
    assert (await drink_used(benefits, survivor), await drink_used(benefits, restored)) == (1, 1)
    # The restored member is served again, and its tier is the tiers service's (it holds no
    # activity there: the gold above was only announced).
    await benefits.tier_learned(restored, "basic")
    await benefits.consume(restored, "test-hotel-welcome-drink")
    assert await drink_used(benefits, restored) == 2
    # Its welcome gift is its own again, under its own grant: climbing to gold once more does
    # not grant a second one.
    await publish(
        benefits.settings,
        "tiers",
        changed(restored.split("/")[1], "basic", "gold", datetime.now(UTC)),
    )
    await benefits.tier_learned(restored, "gold")
    assert await codes_of(benefits, restored) == own[1]
    listed = await benefits.as_().ListCoupons(pb.ListCouponsRequest(member=restored))
    assert all(c.name.startswith(f"{restored}/coupons/") for c in listed.coupons)
