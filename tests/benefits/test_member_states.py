"""Members suspended, merged or erased at the identity service: refused what a member does or is
given (the points service's MEMBER_SUSPENDED / MEMBER_MERGED / MEMBER_ERASED), while what they
hold can still be read and given back; a reactivated member is served again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import grpc
import pytest
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty_kit.caller import Caller
from loyalty_kit.timestamps import timestamp

from tests.benefits.conftest import APP, HOTEL, MALL, MARKETING, Benefits, cny, rid
from tests.benefits.test_birthdays import birthday_coupons, born_on
from tests.benefits.test_issuances import coupons_of, issuance, segment, tagged, watch
from tests.benefits.test_tier_events import changed
from tests.points.conftest import ADMIN
from tests.support.events import publish
from tests.support.rpc import Failure, fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Suspending, reactivating, merging and erasing need `members:manage` at the identity service.
DESK = Caller(unit="mall", client_id="service-desk", scopes=frozenset({"members:manage"}))
REFUSED = grpc.StatusCode.FAILED_PRECONDITION


def id_of(member: str) -> str:
    return member.split("/")[1]


async def probe(benefits: Benefits, member: str) -> Failure:
    """Redeem a coupon the member does not have: COUPON_NOT_FOUND while the member is active,
    the member's state once the benefits service knows it (nothing changes either way)."""
    return await fails(
        benefits.as_(MALL).RedeemCoupon(
            pb.RedeemCouponRequest(
                name=f"{member}/coupons/0000-0000-0000-0000",
                request_id=rid(),
                unit="mall",
                order_id="M-probe",
                order_amount=cny("300.00"),
            )
        )
    )


async def known_as(benefits: Benefits, member: str, reason: str) -> Failure:
    """Wait until the identity event has reached the benefits service."""
    for _ in range(200):
        failure = await probe(benefits, member)
        if failure.reason == reason:
            return failure
        await asyncio.sleep(0.05)
    raise AssertionError(f"benefits never refused {member} with {reason}")


async def suspend(benefits: Benefits, member: str) -> None:
    await benefits.points.identity(DESK).SuspendMember(
        identity_pb.SuspendMemberRequest(name=member, request_id=rid(), reason="chargeback")
    )
    await known_as(benefits, member, "MEMBER_SUSPENDED")


def redeem(coupon: pb.Coupon, order_id: str) -> pb.RedeemCouponRequest:
    return pb.RedeemCouponRequest(
        name=coupon.name,
        request_id=rid(),
        unit="mall",
        order_id=order_id,
        order_amount=cny("300.00"),
    )


async def test_a_suspended_member_is_refused_until_reactivated_and_may_still_read_and_give_back(
    benefits: Benefits,
) -> None:
    member, other = await benefits.points.member(), await benefits.points.member()
    used = await benefits.issue("welcome-gold", member)
    kept = await benefits.issue("welcome-gold", member)
    await benefits.as_(MALL).RedeemCoupon(redeem(used[0], "M-before"))
    consumed = (await benefits.consume(member, "test-hotel-welcome-drink")).consumption
    stock = await benefits.stock("cinema-ticket")
    await suspend(benefits, member)

    expected = {"member_id": id_of(member), "state": "suspended"}
    failure = await fails(benefits.consume(member, "test-hotel-welcome-drink"))
    assert (failure.code, failure.reason, failure.metadata) == (
        REFUSED,
        "MEMBER_SUSPENDED",
        expected,
    )
    failure = await fails(benefits.as_(MALL).RedeemCoupon(redeem(kept[0], "M-during")))
    assert (failure.code, failure.reason, failure.metadata) == (
        REFUSED,
        "MEMBER_SUSPENDED",
        expected,
    )
    # Issuing to a list with a suspended member in it: refused as a whole, naming the member.
    failure = await fails(benefits.issue("welcome-silver", other, member))
    assert (failure.code, failure.reason, failure.metadata) == (
        REFUSED,
        "MEMBER_SUSPENDED",
        expected,
    )
    assert await coupons_of(benefits, other, "welcome-silver") == []
    # A reward: refused by the benefits service itself, before any stock or points move.
    failure = await fails(
        benefits.as_(APP).RedeemReward(
            pb.RedeemRewardRequest(member=member, reward="cinema-ticket", request_id=rid())
        )
    )
    assert (failure.code, failure.reason, failure.metadata) == (
        REFUSED,
        "MEMBER_SUSPENDED",
        expected,
    )
    assert await benefits.stock("cinema-ticket") == stock

    # Reading and giving back keep working.
    entitlements = await benefits.entitlements(member, "hotel")
    drink = next(
        e for e in entitlements.entitlements if e.benefit.code == "test-hotel-welcome-drink"
    )
    assert drink.used == 1
    listed = await benefits.as_(APP).ListCoupons(pb.ListCouponsRequest(member=member))
    assert sorted(c.code for c in listed.coupons) == sorted([used[0].code, kept[0].code])
    got = await benefits.as_(APP).GetCoupon(pb.GetCouponRequest(name=kept[0].name))
    assert got.coupon.state == pb.COUPON_STATE_ISSUED
    released = await benefits.as_(HOTEL).ReleaseConsumption(
        pb.ReleaseConsumptionRequest(name=consumed.name, request_id=rid(), reason="cancelled")
    )
    assert released.consumption.HasField("release_time")
    back = await benefits.as_(MALL).ReleaseCoupon(
        pb.ReleaseCouponRequest(name=used[0].name, request_id=rid(), reason="refund")
    )
    assert back.coupon.state == pb.COUPON_STATE_ISSUED

    # Reactivated: served again.
    await benefits.points.identity(DESK).ReactivateMember(
        identity_pb.ReactivateMemberRequest(name=member, request_id=rid(), reason="resolved")
    )
    await known_as(benefits, member, "COUPON_NOT_FOUND")
    again = await benefits.consume(member, "test-hotel-welcome-drink")
    assert again.entitlement.used == 1
    redeemed = await benefits.as_(MALL).RedeemCoupon(redeem(kept[0], "M-after"))
    assert redeemed.discount.amount == "50.00"
    (issued,) = await benefits.issue("welcome-silver", member)
    assert issued.template_code == "welcome-silver"


async def test_an_absorbed_member_id_is_refused_naming_the_survivor(benefits: Benefits) -> None:
    survivor, absorbed = await benefits.points.member(), await benefits.points.member()
    (moved,) = await benefits.issue("welcome-gold", absorbed)
    await benefits.points.identity(DESK).MergeMembers(
        identity_pb.MergeMembersRequest(survivor=survivor, absorbed=absorbed, request_id=rid())
    )
    failure = await known_as(benefits, absorbed, "MEMBER_MERGED")
    expected = {
        "member_id": id_of(absorbed),
        "state": "merged",
        "merged_into": id_of(survivor),
    }
    assert (failure.code, failure.metadata) == (REFUSED, expected)
    failure = await fails(benefits.consume(absorbed, "test-hotel-welcome-drink"))
    assert (failure.code, failure.reason, failure.metadata) == (REFUSED, "MEMBER_MERGED", expected)
    failure = await fails(benefits.issue("welcome-silver", absorbed))
    assert (failure.reason, failure.metadata) == ("MEMBER_MERGED", expected)
    failure = await fails(
        benefits.as_(APP).RedeemReward(
            pb.RedeemRewardRequest(member=absorbed, reward="cinema-ticket", request_id=rid())
        )
    )
    assert (failure.reason, failure.metadata) == ("MEMBER_MERGED", expected)
    # Reads of the absorbed ID are refused the same way (its coupons are the survivor's now):
    # a stale id never reads as an empty member.
    for read in (
        benefits.as_(APP).ListCoupons(pb.ListCouponsRequest(member=absorbed)),
        benefits.entitlements(absorbed),
        benefits.as_(APP).GetCoupon(pb.GetCouponRequest(name=f"{absorbed}/coupons/{moved.code}")),
    ):
        failure = await fails(read)
        assert (failure.code, failure.reason, failure.metadata) == (
            REFUSED,
            "MEMBER_MERGED",
            expected,
        )
    redeemed = await benefits.as_(MALL).RedeemCoupon(
        redeem(pb.Coupon(name=f"{survivor}/coupons/{moved.code}"), "M-survivor")
    )
    assert redeemed.discount.amount == "50.00"

    # The survivor merged in turn: the first absorbed ID names the last survivor, no chain.
    final = await benefits.points.member()
    await benefits.points.identity(DESK).MergeMembers(
        identity_pb.MergeMembersRequest(survivor=final, absorbed=survivor, request_id=rid())
    )
    failure = await known_as(benefits, survivor, "MEMBER_MERGED")
    assert failure.metadata["merged_into"] == id_of(final)
    failure = await probe(benefits, absorbed)
    assert failure.metadata["merged_into"] == id_of(final)


async def test_an_erased_member_id_is_refused(benefits: Benefits) -> None:
    member = await benefits.points.member()
    await benefits.points.identity(DESK).EraseMember(
        identity_pb.EraseMemberRequest(name=member, request_id=rid(), reason="member request")
    )
    await known_as(benefits, member, "MEMBER_ERASED")
    failure = await fails(benefits.consume(member, "test-hotel-welcome-drink"))
    assert (failure.code, failure.reason, failure.metadata) == (
        REFUSED,
        "MEMBER_ERASED",
        {"member_id": id_of(member), "state": "erased"},
    )


async def test_a_bulk_issuance_skips_a_suspended_member_of_the_segment(
    benefits: Benefits,
) -> None:
    tag = segment()
    members = await tagged(benefits, tag, 3)
    await suspend(benefits, members[1])
    stub = benefits.as_(MARKETING)
    created = (
        await stub.CreateCouponIssuance(issuance("welcome-silver", tag, chunk_size=2))
    ).coupon_issuance
    done = (await watch(stub, created.name))[-1]
    assert done.state == pb.COUPON_ISSUANCE_STATE_SUCCEEDED
    assert (done.total_members, done.processed_members, done.issued_coupons) == (3, 3, 2)
    assert await coupons_of(benefits, members[1], "welcome-silver") == []
    for member in (members[0], members[2]):
        assert len(await coupons_of(benefits, member, "welcome-silver")) == 1


async def test_a_suspended_member_gets_no_welcome_or_birthday_gift(benefits: Benefits) -> None:
    now = datetime.now(UTC)
    today = now.astimezone(ZoneInfo("Asia/Shanghai")).date()
    active, suspended = await born_on(benefits, today), await born_on(benefits, today)
    # The suspension arrives after both birthdays (identity's events come in order).
    await suspend(benefits, suspended)
    for member in (active, suspended):
        await publish(benefits.settings, "tiers", changed(id_of(member), "basic", "silver", now))
    for member in (active, suspended):
        await benefits.tier_learned(member, "silver")  # the tier is learned all the same
    for _ in range(200):
        await benefits.as_(ADMIN).RunBirthdayGifts(pb.RunBirthdayGiftsRequest(as_of=timestamp(now)))
        if await birthday_coupons(benefits, active):
            break
        await asyncio.sleep(0.05)
    assert await birthday_coupons(benefits, active) == [f"birthday:{today.year}"]
    assert len(await coupons_of(benefits, active, "welcome-silver")) == 1
    assert await birthday_coupons(benefits, suspended) == []
    listed = await benefits.as_(APP).ListCoupons(pb.ListCouponsRequest(member=suspended))
    assert list(listed.coupons) == []
