"""Members merged or erased at the identity service: the benefits follow, or go."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import grpc
import pytest
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty.identity.v1 import identity_service_pb2 as identity_pb

from tests.benefits.conftest import APP, MALL, Benefits, cny, rid
from tests.benefits.test_tier_events import changed
from tests.support.events import publish
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def codes_of(benefits: Benefits, member: str) -> list[str]:
    listed = await benefits.as_(APP).ListCoupons(pb.ListCouponsRequest(member=member))
    return sorted(c.code for c in listed.coupons)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the member event never took effect")


async def test_the_survivor_of_a_merge_takes_the_coupons_and_the_quota_used(
    benefits: Benefits,
) -> None:
    survivor, absorbed = await benefits.points.member(), await benefits.points.member()
    await benefits.issue("welcome-gold", survivor)
    (moved,) = await benefits.issue("welcome-gold", absorbed)
    # Both were gold once: each has gold's welcome gift, a grant given once per member.
    for member in (survivor, absorbed):
        await publish(
            benefits.settings,
            "tiers",
            changed(member.split("/")[1], "silver", "gold", datetime.now(UTC)),
        )
    for member in (survivor, absorbed):
        await benefits.tier_learned(member, "gold")
    gifts = [(await codes_of(benefits, m)) for m in (survivor, absorbed)]
    assert [len(g) for g in gifts] == [2, 2]
    await benefits.consume(survivor, "test-hotel-welcome-drink")
    await benefits.consume(absorbed, "test-hotel-welcome-drink")
    await benefits.points.identity().MergeMembers(
        identity_pb.MergeMembersRequest(survivor=survivor, absorbed=absorbed, request_id=rid())
    )

    async def merged() -> bool:
        return await codes_of(benefits, survivor) == sorted(gifts[0] + gifts[1])

    await eventually(merged)
    # The absorbed id no longer lists coupons: it is refused, naming the survivor.
    refused = await fails(codes_of(benefits, absorbed))
    assert (refused.reason, refused.metadata["merged_into"]) == (
        "MEMBER_MERGED",
        survivor.split("/")[1],
    )
    drink = next(
        e
        for e in (await benefits.entitlements(survivor, "hotel")).entitlements
        if e.benefit.code == "test-hotel-welcome-drink"
    )
    assert (drink.used, drink.remaining) == (2, 0)  # one use each: the year's two are used
    # The moved coupon is redeemed under the survivor's name.
    redeemed = await benefits.as_(MALL).RedeemCoupon(
        pb.RedeemCouponRequest(
            name=f"{survivor}/coupons/{moved.code}",
            request_id=rid(),
            unit="mall",
            order_id="M-merge",
            order_amount=cny("300.00"),
        )
    )
    assert redeemed.discount.amount == "50.00"


async def test_an_erased_member_keeps_no_coupons_and_no_quota(benefits: Benefits) -> None:
    member = await benefits.points.member()
    (unused,) = await benefits.issue("welcome-gold", member)
    await benefits.consume(member, "test-hotel-welcome-drink")
    await benefits.points.identity().EraseMember(
        identity_pb.EraseMemberRequest(name=member, request_id=rid(), reason="member request")
    )

    async def erased() -> bool:
        return await codes_of(benefits, member) == []

    await eventually(erased)
    failure = await fails(benefits.as_(APP).GetCoupon(pb.GetCouponRequest(name=unused.name)))
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "COUPON_NOT_FOUND")
    drink = next(
        e
        for e in (await benefits.entitlements(member, "hotel")).entitlements
        if e.benefit.code == "test-hotel-welcome-drink"
    )
    assert drink.used == 0
