"""Coupons: issued, granted once, redeemed against an order, released."""

from __future__ import annotations

from decimal import Decimal

import pytest
from loyalty_benefits.domain import events
from loyalty_benefits.domain.coupons import CouponState
from loyalty_benefits.domain.errors import CouponTemplateNotFound
from loyalty_benefits.service_layer import handlers
from loyalty_kit.errors import FailedPrecondition, MemberNotActive, PermissionDenied
from loyalty_kit.money import Amount

from tests.benefits.unit.conftest import ANN, BOB, Benefits

CNY = "CNY"


async def test_issued_coupons_are_announced_one_each(benefits: Benefits) -> None:
    coupons = await benefits(
        handlers.issue_coupons, "birthday-gift", [ANN, BOB], None, benefits.now
    )

    assert [e for e in benefits.events if isinstance(e, events.CouponIssued)] == [
        c.issued(benefits.now) for c in coupons
    ]
    assert {c.member_id for c in coupons} == {ANN, BOB}


async def test_a_unit_issues_only_its_own_or_the_groups_templates(benefits: Benefits) -> None:
    with pytest.raises(PermissionDenied):
        await benefits(handlers.issue_coupons, "cinema-ticket", [ANN], "mall", benefits.now)
    with pytest.raises(CouponTemplateNotFound):
        await benefits(handlers.issue_coupons, "no-such", [ANN], None, benefits.now)

    await benefits(handlers.issue_coupons, "birthday-gift", [ANN], "mall", benefits.now)
    assert len(benefits.coupons(ANN)) == 1


async def test_a_suspended_member_in_the_list_stops_the_whole_issue(benefits: Benefits) -> None:
    await benefits(handlers.on_member_suspended, BOB, benefits.now)

    with pytest.raises(MemberNotActive):
        await benefits(handlers.issue_coupons, "birthday-gift", [ANN, BOB], None, benefits.now)

    assert benefits.coupons(ANN) == []


async def test_a_grant_is_issued_once_and_answered_the_same_after(benefits: Benefits) -> None:
    rules = await benefits(handlers.catalogue)

    first = await benefits(handlers.grant_coupon, rules, "welcome-gold", ANN, "gift", benefits.now)
    again = await benefits(handlers.grant_coupon, rules, "welcome-gold", ANN, "gift", benefits.now)

    assert first.code == again.code
    assert benefits.kinds().count("CouponIssued") == 1


async def test_a_redemption_takes_the_discount_and_is_announced(benefits: Benefits) -> None:
    (coupon,) = await benefits(handlers.issue_coupons, "welcome-gold", [ANN], None, benefits.now)

    redeemed, discount = await benefits(
        handlers.redeem_coupon,
        ANN,
        coupon.code.lower(),
        "mall",
        "order-9",
        Amount(CNY, Decimal("300")),
        benefits.now,
    )

    assert (redeemed.state, discount) == (CouponState.REDEEMED, Amount(CNY, Decimal("50")))
    assert benefits.events[-1] == events.CouponRedeemed(
        ANN, coupon.code, "welcome-gold", "mall", "order-9", discount, benefits.now
    )


async def test_an_order_under_the_minimum_spend_redeems_nothing(benefits: Benefits) -> None:
    (coupon,) = await benefits(handlers.issue_coupons, "welcome-gold", [ANN], None, benefits.now)

    with pytest.raises(FailedPrecondition):
        await benefits(
            handlers.redeem_coupon,
            ANN,
            coupon.code,
            "mall",
            "o",
            Amount(CNY, Decimal("199")),
            benefits.now,
        )

    assert benefits.coupons(ANN)[0].state is CouponState.ISSUED
    assert benefits.kinds().count("CouponRedeemed") == 0


async def test_a_release_by_the_redeeming_unit_makes_the_coupon_usable_again(
    benefits: Benefits,
) -> None:
    (coupon,) = await benefits(handlers.issue_coupons, "welcome-gold", [ANN], None, benefits.now)
    order = Amount(CNY, Decimal("300"))
    await benefits(handlers.redeem_coupon, ANN, coupon.code, "mall", "o", order, benefits.now)

    with pytest.raises(PermissionDenied):
        await benefits(handlers.release_coupon, ANN, coupon.code, "refund", "hotel", benefits.now)
    released = await benefits(
        handlers.release_coupon, ANN, coupon.code, "refund", "mall", benefits.now
    )

    assert released.state is CouponState.ISSUED
    last = benefits.events[-1]
    assert isinstance(last, events.CouponReleased)
    assert (last.order_id, last.reason, last.discount) == (
        "o",
        "refund",
        Amount(CNY, Decimal("50")),
    )


async def test_a_members_coupons_are_listed_newest_first_by_state(benefits: Benefits) -> None:
    issued = await benefits(
        handlers.issue_coupons, "birthday-gift", [ANN, ANN, ANN], None, benefits.now
    )
    order = Amount(CNY, Decimal("100"))
    await benefits(handlers.redeem_coupon, ANN, issued[0].code, "mall", "o", order, benefits.now)

    every = await benefits(handlers.member_coupons, ANN, None, benefits.now, None, 10)
    usable = await benefits(
        handlers.member_coupons, ANN, CouponState.ISSUED, benefits.now, None, 10
    )
    expired = await benefits(
        handlers.member_coupons, ANN, CouponState.EXPIRED, benefits.later(days=400), None, 10
    )

    assert [c.code for _, c in every] == [c.code for c in reversed(issued)]
    assert [c.code for _, c in usable] == [issued[2].code, issued[1].code]
    assert len(expired) == 2
