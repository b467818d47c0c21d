"""Entitlements from the member's tier (learned from the tiers service), consumed exactly once
per request and never beyond the quota, at the caller's own unit."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty.benefits.v1 import events_pb2
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty_kit.status import error_info, from_rpc_error

from tests.benefits.conftest import HOTEL, MALL, Benefits, rid
from tests.points.conftest import ADMIN
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")


def reason_of(error: grpc.aio.AioRpcError) -> str:
    status = from_rpc_error(error)
    info = error_info(status) if status is not None else None
    return info.reason if info is not None else ""


def by_code(response: pb.ListEntitlementsResponse) -> dict[str, Any]:
    return {e.benefit.code: e for e in response.entitlements}


async def test_a_member_earning_to_gold_gets_two_late_checkouts_a_tier_year_at_the_hotel(
    benefits: Benefits,
) -> None:
    member = await benefits.points.member()
    before = by_code(await benefits.entitlements(member, "hotel"))
    assert "hotel-late-checkout" not in before  # a basic member has none
    failure = await fails(benefits.consume(member, "hotel-late-checkout"))
    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_ENTITLED")

    await benefits.points.earn(member, "mall", "6000.00")  # silver
    await benefits.points.earn(member, "mall", "15000.00")  # 21,000 in 12 months: gold
    await benefits.tier_learned(member, "gold")

    at_hotel = await benefits.entitlements(member, "hotel")
    assert at_hotel.tier == "gold"
    hotel = by_code(at_hotel)
    assert sorted(hotel) == [
        "hotel-late-checkout",
        "test-group-service-line",
        "test-hotel-welcome-drink",
    ]  # the hotel's own and the group's; not the mall's discount, not platinum's upgrades
    checkout = hotel["hotel-late-checkout"]
    assert (checkout.quota, checkout.used, checkout.remaining, checkout.unlimited) == (
        2,
        0,
        2,
        False,
    )
    tier = await benefits.tiers.GetMemberTier(tiers_pb.GetMemberTierRequest(member=member))
    assert checkout.period_end == tier.tier_year_end  # the quota counts per tier year
    assert "mall-gold-discount" in by_code(await benefits.entitlements(member, "mall"))

    first = await benefits.consume(member, "hotel-late-checkout", order_id="H-1")
    assert first.entitlement.remaining == 1
    second = await benefits.consume(member, "hotel-late-checkout", order_id="H-2")
    assert (second.entitlement.used, second.entitlement.remaining) == (2, 0)
    third = await fails(benefits.consume(member, "hotel-late-checkout", order_id="H-3"))
    assert (third.code, third.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "QUOTA_EXHAUSTED")
    assert third.domain == "benefits.loyalty" and third.metadata["quota"] == "2"
    assert (
        by_code(await benefits.entitlements(member, "hotel"))["hotel-late-checkout"].remaining == 0
    )

    # The booking of H-2 is cancelled: its late checkout comes back.
    released = await benefits.as_(HOTEL).ReleaseConsumption(
        pb.ReleaseConsumptionRequest(
            name=second.consumption.name, request_id=rid(), reason="booking cancelled"
        )
    )
    assert released.consumption.HasField("release_time")
    assert (
        by_code(await benefits.entitlements(member, "hotel"))["hotel-late-checkout"].remaining == 1
    )
    await benefits.consume(member, "hotel-late-checkout", order_id="H-4")

    consumed = await benefits.events(events_pb2.BenefitConsumed, member.split("/")[1], count=3)
    assert sorted(e.order_id for e in consumed) == ["H-1", "H-2", "H-4"]
    assert {e.unit for e in consumed} == {"hotel"}


async def test_the_upgrades_bring_each_new_tiers_welcome_coupon_once(benefits: Benefits) -> None:
    member = await benefits.points.member()
    await benefits.points.earn(member, "mall", "6000.00")
    await benefits.tier_learned(member, "silver")
    await benefits.points.earn(member, "mall", "15000.00")
    await benefits.tier_learned(member, "gold")
    coupons = (await benefits.as_(HOTEL).ListCoupons(pb.ListCouponsRequest(member=member))).coupons
    assert [(c.template_code, c.source) for c in coupons] == [
        ("welcome-gold", "welcome:gold"),
        ("welcome-silver", "welcome:silver"),
    ]
    issued = await benefits.events(events_pb2.CouponIssued, member.split("/")[1], count=2)
    assert sorted(e.source for e in issued) == ["welcome:gold", "welcome:silver"]


async def test_twenty_concurrent_consumptions_of_a_two_a_year_benefit_two_succeed(
    benefits: Benefits,
) -> None:
    member = await benefits.points.member()
    results = await asyncio.gather(
        *(
            benefits.consume(member, "test-hotel-welcome-drink", order_id=f"R-{i}")
            for i in range(20)
        ),
        return_exceptions=True,
    )
    succeeded = [r for r in results if isinstance(r, pb.ConsumeBenefitResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(succeeded) == 2 and len(refused) == 18
    assert {r.code() for r in refused} == {grpc.StatusCode.FAILED_PRECONDITION}
    assert {reason_of(r) for r in refused} == {"QUOTA_EXHAUSTED"}
    drink = by_code(await benefits.entitlements(member, "hotel"))["test-hotel-welcome-drink"]
    assert (drink.used, drink.remaining) == (2, 0)


async def test_a_retried_consumption_counts_once_and_a_reused_request_id_is_refused(
    benefits: Benefits,
) -> None:
    member = await benefits.points.member()
    request_id = rid()
    first = await benefits.consume(
        member, "test-hotel-welcome-drink", request_id=request_id, order_id="X-1"
    )
    retry = await benefits.consume(
        member, "test-hotel-welcome-drink", request_id=request_id, order_id="X-1"
    )
    assert retry.consumption.consumption_id == first.consumption.consumption_id
    assert by_code(await benefits.entitlements(member))["test-hotel-welcome-drink"].used == 1
    failure = await fails(
        benefits.consume(member, "test-hotel-welcome-drink", request_id=request_id, order_id="X-2")
    )
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )


async def test_a_unit_consumes_only_its_own_benefits_and_the_groups(benefits: Benefits) -> None:
    member = await benefits.points.member()
    # The mall cannot consume the hotel's benefit, even for a member entitled to it.
    failure = await fails(benefits.consume(member, "test-hotel-welcome-drink", caller=MALL))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "BENEFIT_OF_ANOTHER_UNIT",
    )
    # Nor act as the hotel.
    failure = await fails(
        benefits.consume(member, "test-hotel-welcome-drink", caller=MALL, unit="hotel")
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")
    # A group benefit is usable at every unit.
    at_mall = await benefits.consume(member, "test-group-service-line", caller=MALL)
    at_hotel = await benefits.consume(member, "test-group-service-line", caller=HOTEL)
    assert at_mall.entitlement.unlimited and at_hotel.consumption.unit == "hotel"
    # The mall cannot release what the hotel consumed.
    failure = await fails(
        benefits.as_(MALL).ReleaseConsumption(
            pb.ReleaseConsumptionRequest(name=at_hotel.consumption.name, request_id=rid())
        )
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")


async def test_releasing_twice_or_something_unknown_is_refused(benefits: Benefits) -> None:
    member = await benefits.points.member()
    used = await benefits.consume(member, "test-hotel-welcome-drink")
    release = pb.ReleaseConsumptionRequest(name=used.consumption.name, request_id=rid())
    await benefits.as_(HOTEL).ReleaseConsumption(release)
    await benefits.as_(HOTEL).ReleaseConsumption(release)  # a retry: the first answer
    failure = await fails(
        benefits.as_(HOTEL).ReleaseConsumption(
            pb.ReleaseConsumptionRequest(name=used.consumption.name, request_id=rid())
        )
    )
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CONSUMPTION_ALREADY_RELEASED",
    )
    assert by_code(await benefits.entitlements(member))["test-hotel-welcome-drink"].used == 0
    unknown = f"{member}/consumptions/00000000-0000-4000-8000-000000000000"
    failure = await fails(
        benefits.as_(ADMIN).ReleaseConsumption(
            pb.ReleaseConsumptionRequest(name=unknown, request_id=rid())
        )
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "CONSUMPTION_NOT_FOUND")


async def test_unknown_benefits_and_bad_requests_get_clear_errors(benefits: Benefits) -> None:
    member = await benefits.points.member()
    failure = await fails(benefits.consume(member, "spa-massage"))
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "BENEFIT_NOT_FOUND")
    failure = await fails(benefits.consume("members/nobody", "test-hotel-welcome-drink"))
    assert (failure.code, failure.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["member"])
    failure = await fails(
        benefits.as_(HOTEL).ConsumeBenefit(
            pb.ConsumeBenefitRequest(
                member=member, benefit="test-hotel-welcome-drink", unit="hotel"
            )
        )
    )
    assert (failure.code, failure.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["request_id"])
    failure = await fails(
        benefits.as_(HOTEL).ListEntitlements(
            pb.ListEntitlementsRequest(member=member, page_size=-1)
        )
    )
    assert failure.fields == ["page_size"]
    failure = await fails(
        benefits.as_(HOTEL).ReleaseConsumption(
            pb.ReleaseConsumptionRequest(name=f"{member}/consumptions/x", request_id=rid())
        )
    )
    assert failure.fields == ["name"]


async def test_entitlements_are_listed_page_by_page(benefits: Benefits) -> None:
    member = await benefits.points.member()
    codes: list[str] = []
    token = ""
    while True:
        page = await benefits.as_(HOTEL).ListEntitlements(
            pb.ListEntitlementsRequest(member=member, page_size=1, page_token=token)
        )
        codes += [e.benefit.code for e in page.entitlements]
        token = page.next_page_token
        if not token:
            break
    assert codes == ["test-group-service-line", "test-hotel-welcome-drink"]  # a basic member's
