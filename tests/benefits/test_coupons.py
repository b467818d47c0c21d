"""Coupons: unique unguessable codes, issued to one member or many, redeemed once, within their
validity, at an allowed unit; a redemption released by the unit that made it (or an admin)."""

from __future__ import annotations

import asyncio
import re

import grpc
import pytest
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty.benefits.v1 import events_pb2
from loyalty.common.v1 import money_pb2

from tests.benefits.conftest import APP, CINEMA, HOTEL, MALL, Benefits, cny, rid
from tests.points.conftest import ADMIN
from tests.support.clock import Clock
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

CODE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$")


def redeem(
    coupon: pb.Coupon, amount: str, unit: str = "mall", order_id: str = "M-1", **more: str
) -> pb.RedeemCouponRequest:
    return pb.RedeemCouponRequest(
        name=coupon.name,
        request_id=more.get("request_id", rid()),
        unit=unit,
        order_id=order_id,
        order_amount=cny(amount),
    )


async def test_coupons_issued_to_a_list_have_unique_unguessable_codes(benefits: Benefits) -> None:
    members = [await benefits.points.member() for _ in range(3)]
    coupons = await benefits.issue("welcome-gold", *members, members[0])
    assert [c.name.rsplit("/coupons/", 1)[0] for c in coupons] == [*members, members[0]]
    codes = [c.code for c in coupons]
    assert len(set(codes)) == 4 and all(CODE.match(code) for code in codes)
    first = coupons[0]
    assert (first.amount.amount, first.minimum_spend.amount, first.state) == (
        "50.00",
        "200.00",
        pb.COUPON_STATE_ISSUED,
    )
    assert (first.valid_until.seconds - first.valid_from.seconds) == 90 * 86400
    listed = await benefits.as_(APP).ListCoupons(pb.ListCouponsRequest(member=members[0]))
    assert sorted(c.code for c in listed.coupons) == sorted([codes[0], codes[3]])
    issued = await benefits.events(events_pb2.CouponIssued, members[1].split("/")[1])
    assert [(e.code, e.template_code, e.source) for e in issued] == [
        (codes[1], "welcome-gold", "issue")
    ]


async def test_an_amount_off_coupon_needs_its_minimum_and_is_redeemed_once(
    benefits: Benefits,
) -> None:
    member = await benefits.points.member()
    (coupon,) = await benefits.issue("welcome-gold", member)  # CNY 50 off from CNY 200
    failure = await fails(benefits.as_(MALL).RedeemCoupon(redeem(coupon, "199.99")))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "MINIMUM_SPEND_NOT_MET",
    )
    request = redeem(coupon, "260.00", order_id="M-7")
    redeemed = await benefits.as_(MALL).RedeemCoupon(request)
    assert (redeemed.discount.currency_code, redeemed.discount.amount) == ("CNY", "50.00")
    assert redeemed.coupon.state == pb.COUPON_STATE_REDEEMED
    assert (redeemed.coupon.redeemed_unit, redeemed.coupon.redeemed_order_id) == ("mall", "M-7")
    retried = await benefits.as_(MALL).RedeemCoupon(request)  # the POS retries: the same answer
    assert retried == redeemed
    failure = await fails(benefits.as_(MALL).RedeemCoupon(redeem(coupon, "300.00")))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "COUPON_ALREADY_REDEEMED",
    )
    assert failure.metadata["order_id"] == "M-7"
    events = await benefits.events(events_pb2.CouponRedeemed, member.split("/")[1])
    assert [(e.code, e.unit, e.order_id, e.discount.amount) for e in events] == [
        (coupon.code, "mall", "M-7", "50.00")
    ]


async def test_a_percentage_coupon_rounds_down_and_only_works_at_its_unit(
    benefits: Benefits,
) -> None:
    member = await benefits.points.member()
    (coupon,) = await benefits.issue("test-mall-15", member, caller=MALL)  # 15% at the mall
    failure = await fails(benefits.as_(HOTEL).RedeemCoupon(redeem(coupon, "500.00", unit="hotel")))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "COUPON_NOT_VALID_AT_UNIT",
    )
    failure = await fails(
        benefits.as_(MALL).RedeemCoupon(
            pb.RedeemCouponRequest(
                name=coupon.name,
                request_id=rid(),
                unit="mall",
                order_id="M-2",
                order_amount=money_pb2.Money(currency_code="HKD", amount="500.00"),
            )
        )
    )
    assert failure.reason == "CURRENCY_MISMATCH"
    redeemed = await benefits.as_(MALL).RedeemCoupon(redeem(coupon, "333.33"))
    assert redeemed.discount.amount == "49.99"  # 49.9995 rounded down to the fen


async def test_a_coupon_past_its_validity_or_before_it_cannot_be_redeemed(
    benefits: Benefits, clock: Clock
) -> None:
    member = await benefits.points.member()
    (short,) = await benefits.issue("test-mall-15", member, caller=MALL)  # valid for a day
    (later,) = await benefits.issue("welcome-gold", member)
    (future,) = await benefits.issue("test-next-year", member)
    failure = await fails(benefits.as_(MALL).RedeemCoupon(redeem(future, "100.00")))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "COUPON_NOT_YET_VALID",
    )
    clock.advance(days=2)
    try:
        failure = await fails(benefits.as_(MALL).RedeemCoupon(redeem(short, "200.00")))
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "COUPON_EXPIRED",
        )
        expired = await benefits.as_(APP).ListCoupons(
            pb.ListCouponsRequest(member=member, state=pb.COUPON_STATE_EXPIRED)
        )
        assert [c.code for c in expired.coupons] == [short.code]
        usable = await benefits.as_(APP).ListCoupons(
            pb.ListCouponsRequest(member=member, state=pb.COUPON_STATE_ISSUED)
        )
        assert sorted(c.code for c in usable.coupons) == sorted([later.code, future.code])
    finally:
        clock.reset()


async def test_ten_tills_redeeming_one_coupon_at_once_one_succeeds(benefits: Benefits) -> None:
    member = await benefits.points.member()
    (coupon,) = await benefits.issue("welcome-gold", member)
    results = await asyncio.gather(
        *(
            benefits.as_(MALL).RedeemCoupon(redeem(coupon, "500.00", order_id=f"M-{i}"))
            for i in range(10)
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(r, pb.RedeemCouponResponse) for r in results) == 1
    assert all(
        r.code() == grpc.StatusCode.FAILED_PRECONDITION
        for r in results
        if isinstance(r, grpc.aio.AioRpcError)
    )


def release(
    coupon: pb.Coupon, reason: str = "order refunded", **more: str
) -> pb.ReleaseCouponRequest:
    return pb.ReleaseCouponRequest(
        name=coupon.name, request_id=more.get("request_id", rid()), reason=reason
    )


async def test_a_released_coupon_is_issued_again_and_can_be_redeemed_again(
    benefits: Benefits,
) -> None:
    member = await benefits.points.member()
    (coupon,) = await benefits.issue("welcome-gold", member)  # CNY 50 off from CNY 200
    await benefits.as_(MALL).RedeemCoupon(redeem(coupon, "260.00", order_id="M-8"))
    request = release(coupon, "checkout cancelled")
    released = await benefits.as_(MALL).ReleaseCoupon(request)
    again = released.coupon
    assert (again.state, again.redeemed_unit, again.redeemed_order_id) == (
        pb.COUPON_STATE_ISSUED,
        "",
        "",
    )
    assert not again.HasField("discount") and not again.HasField("redeem_time")
    got = await benefits.as_(APP).GetCoupon(pb.GetCouponRequest(name=coupon.name))
    assert got.coupon == again
    events = await benefits.events(events_pb2.CouponReleased, member.split("/")[1])
    assert [(e.code, e.unit, e.order_id, e.discount.amount, e.reason) for e in events] == [
        (coupon.code, "mall", "M-8", "50.00", "checkout cancelled")
    ]
    redeemed = await benefits.as_(MALL).RedeemCoupon(redeem(coupon, "300.00", order_id="M-9"))
    assert (redeemed.coupon.state, redeemed.coupon.redeemed_order_id) == (
        pb.COUPON_STATE_REDEEMED,
        "M-9",
    )
    assert redeemed.discount.amount == "50.00"
    retried = await benefits.as_(MALL).ReleaseCoupon(request)  # a retry: the first answer
    assert retried == released
    got = await benefits.as_(APP).GetCoupon(pb.GetCouponRequest(name=coupon.name))
    assert got.coupon.state == pb.COUPON_STATE_REDEEMED  # the retry released nothing
    assert len(await benefits.events(events_pb2.CouponReleased, member.split("/")[1])) == 1


async def test_only_the_unit_that_redeemed_a_coupon_or_an_admin_releases_it(
    benefits: Benefits,
) -> None:
    member = await benefits.points.member()
    (coupon,) = await benefits.issue("welcome-gold", member)
    failure = await fails(benefits.as_(MALL).ReleaseCoupon(release(coupon)))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "COUPON_NOT_REDEEMED",
    )
    await benefits.as_(MALL).RedeemCoupon(redeem(coupon, "500.00"))
    failure = await fails(benefits.as_(HOTEL).ReleaseCoupon(release(coupon)))
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")
    assert (failure.metadata["unit"], failure.metadata["caller_unit"]) == ("mall", "hotel")
    got = await benefits.as_(APP).GetCoupon(pb.GetCouponRequest(name=coupon.name))
    assert got.coupon.state == pb.COUPON_STATE_REDEEMED
    released = await benefits.as_(ADMIN).ReleaseCoupon(release(coupon))
    assert released.coupon.state == pb.COUPON_STATE_ISSUED
    failure = await fails(benefits.as_(ADMIN).ReleaseCoupon(release(coupon)))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "COUPON_NOT_REDEEMED",
    )
    failure = await fails(
        benefits.as_(MALL).ReleaseCoupon(
            pb.ReleaseCouponRequest(name=f"{member}/coupons/NOPE", request_id=rid())
        )
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "COUPON_NOT_FOUND")
    failure = await fails(
        benefits.as_(MALL).ReleaseCoupon(
            pb.ReleaseCouponRequest(name=f"{member}/consumptions/x", request_id=rid())
        )
    )
    assert (failure.code, failure.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["name"])


async def test_a_coupon_released_after_its_validity_comes_back_expired(
    benefits: Benefits, clock: Clock
) -> None:
    member = await benefits.points.member()
    (coupon,) = await benefits.issue("test-mall-15", member, caller=MALL)  # valid for a day
    await benefits.as_(MALL).RedeemCoupon(redeem(coupon, "200.00"))
    clock.advance(days=2)
    try:
        released = await benefits.as_(MALL).ReleaseCoupon(release(coupon))
        assert (released.coupon.state, released.coupon.redeemed_order_id) == (
            pb.COUPON_STATE_EXPIRED,
            "",
        )
        failure = await fails(benefits.as_(MALL).RedeemCoupon(redeem(coupon, "200.00")))
        assert failure.reason == "COUPON_EXPIRED"
    finally:
        clock.reset()


async def test_ten_releases_of_one_coupon_at_once_one_succeeds(benefits: Benefits) -> None:
    member = await benefits.points.member()
    (coupon,) = await benefits.issue("welcome-gold", member)
    await benefits.as_(MALL).RedeemCoupon(redeem(coupon, "500.00"))
    results = await asyncio.gather(
        *(benefits.as_(MALL).ReleaseCoupon(release(coupon)) for _ in range(10)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, pb.ReleaseCouponResponse) for r in results) == 1
    failures = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(failures) == 9
    assert all(r.code() == grpc.StatusCode.FAILED_PRECONDITION for r in failures)
    assert len(await benefits.events(events_pb2.CouponReleased, member.split("/")[1])) == 1


async def test_unknown_coupons_and_bad_requests_get_clear_errors(benefits: Benefits) -> None:
    member, other = await benefits.points.member(), await benefits.points.member()
    (coupon,) = await benefits.issue("welcome-gold", member)
    # Another member's code is no coupon of this member's.
    stolen = pb.Coupon(name=f"{other}/coupons/{coupon.code}")
    failure = await fails(benefits.as_(MALL).RedeemCoupon(redeem(stolen, "500.00")))
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "COUPON_NOT_FOUND")
    failure = await fails(
        benefits.as_(APP).GetCoupon(pb.GetCouponRequest(name=f"{member}/coupons/NOPE"))
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "COUPON_NOT_FOUND")
    failure = await fails(benefits.as_(MALL).RedeemCoupon(redeem(coupon, "1e3")))
    assert (failure.code, failure.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["order_amount.amount"],
    )
    failure = await fails(benefits.as_(CINEMA).RedeemCoupon(redeem(coupon, "500.00")))
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")
    failure = await fails(benefits.issue("no-such-template", member))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.NOT_FOUND,
        "COUPON_TEMPLATE_NOT_FOUND",
    )
    failure = await fails(benefits.issue("welcome-gold", member, caller=CINEMA))
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED")
    failure = await fails(benefits.issue("test-mall-15", member, caller=HOTEL))  # the mall's
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")
    failure = await fails(benefits.issue("welcome-gold", member, "members/x"))
    assert (failure.code, failure.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["members[1]"])
    failure = await fails(benefits.issue("welcome-gold"))
    assert failure.fields == ["members"]


async def test_a_members_coupons_are_listed_newest_first_page_by_page(benefits: Benefits) -> None:
    member = await benefits.points.member()
    issued = [(await benefits.issue("welcome-gold", member))[0].code for _ in range(3)]
    seen: list[str] = []
    token = ""
    while True:
        page = await benefits.as_(APP).ListCoupons(
            pb.ListCouponsRequest(member=member, page_size=2, page_token=token)
        )
        seen += [c.code for c in page.coupons]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(issued))
