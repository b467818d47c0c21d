"""Looking up a consumption or a coupon redemption by the request_id it was asked with, never
taking anything (a checkout's recovery asks before giving back)."""

from __future__ import annotations

import grpc
import pytest
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty_kit.caller import Caller

from tests.benefits.conftest import APP, HOTEL, MALL, Benefits, cny, rid
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")
DRINK = "test-hotel-welcome-drink"


async def remaining(benefits: Benefits, member: str) -> int:
    page = await benefits.entitlements(member, "hotel")
    return next(e.remaining for e in page.entitlements if e.benefit.code == DRINK)


async def test_a_consumption_is_found_by_its_request_id_and_a_lookup_consumes_nothing(
    benefits: Benefits,
) -> None:
    member = await benefits.points.member()
    before = await remaining(benefits, member)
    never = rid()
    hotel = benefits.as_(HOTEL)
    lookup = pb.LookupConsumptionRequest(member=member, request_id=never)
    assert not (await hotel.LookupConsumption(lookup)).consumed
    assert await remaining(benefits, member) == before
    consumed = await benefits.consume(member, DRINK, request_id=never)  # still a first call
    found = await hotel.LookupConsumption(lookup)
    assert found.consumed and found.consumption == consumed
    assert await remaining(benefits, member) == before - 1
    # Under another member, or by another API client, nothing.
    other = await benefits.points.member()
    assert not (
        await hotel.LookupConsumption(pb.LookupConsumptionRequest(member=other, request_id=never))
    ).consumed
    assert not (await benefits.as_(MALL).LookupConsumption(lookup)).consumed
    # The same client acting for another unit is refused, as a release would be.
    elsewhere = Caller(unit="mall", client_id=HOTEL.client_id)
    refused = await fails(benefits.as_(elsewhere).LookupConsumption(lookup))
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")
    admin = Caller(unit="group", client_id=HOTEL.client_id, scopes=frozenset({"admin"}))
    assert (await benefits.as_(admin).LookupConsumption(lookup)).consumed


async def test_a_coupon_redemption_is_found_by_its_request_id_and_a_lookup_redeems_nothing(
    benefits: Benefits,
) -> None:
    member = await benefits.points.member()
    (coupon,) = await benefits.issue("welcome-gold", member)
    never = rid()
    mall = benefits.as_(MALL)
    lookup = pb.LookupCouponRedemptionRequest(name=coupon.name, request_id=never)
    assert not (await mall.LookupCouponRedemption(lookup)).redeemed
    got = await benefits.as_(APP).GetCoupon(pb.GetCouponRequest(name=coupon.name))
    assert got.coupon.state == pb.COUPON_STATE_ISSUED
    redeemed = await mall.RedeemCoupon(
        pb.RedeemCouponRequest(
            name=coupon.name,
            request_id=never,
            unit="mall",
            order_id="M-1",
            order_amount=cny("300.00"),
        )
    )
    found = await mall.LookupCouponRedemption(lookup)
    assert found.redeemed and found.redemption == redeemed
    elsewhere = Caller(unit="hotel", client_id=MALL.client_id)
    refused = await fails(benefits.as_(elsewhere).LookupCouponRedemption(lookup))
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")
    bad = await fails(
        mall.LookupCouponRedemption(pb.LookupCouponRedemptionRequest(name="x", request_id=never))
    )
    assert (bad.code, bad.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["name"])
