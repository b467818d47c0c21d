"""Coupon offers members claim themselves (优惠券领取), over real channels: a unit publishes an
offer, members claim it with their own token or through a unit's app, and the coupon is among
theirs. Never more claims than the offer holds nor more per member than its limit, however many
claim at once; a retried claim answers the same coupon; every refusal with its reason."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty.benefits.v1 import coupon_offers_pb2 as offers_pb
from loyalty.benefits.v1 import coupon_offers_pb2_grpc, events_pb2
from loyalty_kit.caller import Caller

from tests.benefits.conftest import APP, HOTEL, MALL, MARKETING, Benefits, rid
from tests.support.clients import As
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

OPEN = offers_pb.COUPON_OFFER_STATE_OPEN
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def stamp(moment: datetime) -> Timestamp:
    found = Timestamp()
    found.FromDatetime(moment)
    return found


def own_token(member: str) -> Caller:
    """A member's own token (signed in in the app): it speaks for that member only."""
    member_id = member.removeprefix("members/")
    return Caller(
        client_id=f"member:{member_id}",
        scopes=frozenset({"self:read", "self:redeem"}),
        member=member_id,
    )


def offers(benefits: Benefits, caller: Caller = MARKETING) -> Any:
    return As(coupon_offers_pb2_grpc.CouponOfferServiceStub, benefits.channel, caller)


def offer_request(
    template: str = "birthday-gift",
    available: int = 5,
    limit: int = 0,
    starts: timedelta = timedelta(minutes=-1),
    lasts: timedelta = timedelta(days=7),
    **more: Any,
) -> offers_pb.CreateCouponOfferRequest:
    start = datetime.now(UTC) + starts
    return offers_pb.CreateCouponOfferRequest(
        coupon_offer=offers_pb.CouponOffer(
            template=template,
            available=available,
            per_member_limit=limit,
            claim_start_time=stamp(start),
            claim_end_time=stamp(start + lasts),
            minimum_tier=more.pop("minimum_tier", ""),
        ),
        request_id=more.pop("request_id", rid()),
    )


async def publish(benefits: Benefits, caller: Caller = MARKETING, **more: Any) -> str:
    created = await offers(benefits, caller).CreateCouponOffer(offer_request(**more))
    return str(created.coupon_offer.name)


def claim(offer: str, member: str, request_id: str | None = None) -> offers_pb.ClaimCouponRequest:
    return offers_pb.ClaimCouponRequest(offer=offer, member=member, request_id=request_id or rid())


async def coupons_of(benefits: Benefits, member: str) -> list[pb.Coupon]:
    listed = await benefits.as_(APP).ListCoupons(pb.ListCouponsRequest(member=member))
    return list(listed.coupons)


async def test_a_member_claims_a_published_offer_and_finds_the_coupon_among_theirs(
    benefits: Benefits,
) -> None:
    offer = await publish(benefits, available=3, limit=2)
    member = await benefits.points.member()
    phone = offers(benefits, own_token(member))

    listed = await phone.ListCouponOffers(offers_pb.ListCouponOffersRequest(member=member))
    (shown,) = [o for o in listed.coupon_offers if o.name == offer]
    assert (shown.state, shown.remaining, shown.member_claimed) == (OPEN, 3, 0)
    assert shown.coupon_template.code == "birthday-gift" and shown.issuer_unit == "group"

    claimed = await phone.ClaimCoupon(claim(offer, member))

    assert claimed.coupon.template_code == "birthday-gift"
    assert claimed.coupon.name == f"{member}/coupons/{claimed.coupon.code}"
    assert claimed.coupon.source.startswith(f"offer:{offer.removeprefix('couponOffers/')}:")
    assert (claimed.coupon_offer.claimed, claimed.coupon_offer.member_claimed) == (1, 1)
    assert [c.code for c in await coupons_of(benefits, member)] == [claimed.coupon.code]
    got = await phone.GetCouponOffer(offers_pb.GetCouponOfferRequest(name=offer, member=member))
    assert (got.coupon_offer.remaining, got.coupon_offer.member_claimed) == (2, 1)
    issued = await benefits.events(events_pb2.CouponIssued, member.removeprefix("members/"))
    assert [e.code for e in issued] == [claimed.coupon.code]
    (announced,) = await benefits.events(events_pb2.CouponClaimed, member.removeprefix("members/"))
    assert (announced.offer_id, announced.code, announced.offer_claimed) == (
        offer.removeprefix("couponOffers/"),
        claimed.coupon.code,
        1,
    )


async def test_many_members_claiming_at_once_take_no_more_than_the_offer_holds(
    benefits: Benefits,
) -> None:
    offer = await publish(benefits, available=5)
    members = await asyncio.gather(*(benefits.points.member() for _ in range(20)))

    results = await asyncio.gather(
        *(offers(benefits, own_token(m)).ClaimCoupon(claim(offer, m)) for m in members),
        return_exceptions=True,
    )

    won = [r for r in results if isinstance(r, offers_pb.ClaimCouponResponse)]
    lost = [r for r in results if not isinstance(r, offers_pb.ClaimCouponResponse)]
    assert len(won) == 5 and len(lost) == 15
    for error in lost:
        assert isinstance(error, grpc.aio.AioRpcError), error
        failure = await fails(_raise(error))
        assert (failure.code, failure.reason) == (FAILED_PRECONDITION, "OFFER_EXHAUSTED")
    got = await offers(benefits).GetCouponOffer(offers_pb.GetCouponOfferRequest(name=offer))
    assert (got.coupon_offer.claimed, got.coupon_offer.remaining) == (5, 0)
    assert got.coupon_offer.state == offers_pb.COUPON_OFFER_STATE_EXHAUSTED
    held = [len(await coupons_of(benefits, m)) for m in members]
    assert sorted(held) == [0] * 15 + [1] * 5


async def _raise(error: BaseException) -> None:
    raise error


async def test_one_member_claiming_at_once_gets_no_more_than_the_limit(
    benefits: Benefits,
) -> None:
    offer = await publish(benefits, available=100, limit=2)
    member = await benefits.points.member()
    phone = offers(benefits, own_token(member))

    results = await asyncio.gather(
        *(phone.ClaimCoupon(claim(offer, member)) for _ in range(10)), return_exceptions=True
    )

    assert sum(isinstance(r, offers_pb.ClaimCouponResponse) for r in results) == 2
    for error in (r for r in results if isinstance(r, grpc.aio.AioRpcError)):
        failure = await fails(_raise(error))
        assert (failure.code, failure.reason) == (FAILED_PRECONDITION, "OFFER_LIMIT_REACHED")
    assert len(await coupons_of(benefits, member)) == 2
    got = await phone.GetCouponOffer(offers_pb.GetCouponOfferRequest(name=offer, member=member))
    assert (got.coupon_offer.claimed, got.coupon_offer.member_claimed) == (2, 2)


async def test_a_retried_claim_answers_the_same_coupon_and_claims_nothing_more(
    benefits: Benefits,
) -> None:
    offer = await publish(benefits, available=10, limit=3)
    member = await benefits.points.member()
    phone = offers(benefits, own_token(member))
    request_id = rid()

    first = await phone.ClaimCoupon(claim(offer, member, request_id))
    again = await asyncio.gather(
        *(phone.ClaimCoupon(claim(offer, member, request_id)) for _ in range(5))
    )

    assert {r.coupon.code for r in again} == {first.coupon.code}
    assert [c.code for c in await coupons_of(benefits, member)] == [first.coupon.code]
    got = await phone.GetCouponOffer(offers_pb.GetCouponOfferRequest(name=offer, member=member))
    assert (got.coupon_offer.claimed, got.coupon_offer.member_claimed) == (1, 1)
    other = await fails(phone.ClaimCoupon(claim(await publish(benefits), member, request_id)))
    assert other.reason == "REQUEST_ID_REUSED"


async def test_a_unit_app_claims_its_own_and_the_groups_offers_for_its_members(
    benefits: Benefits,
) -> None:
    member = await benefits.points.member()
    hotel_offer = await publish(benefits, HOTEL, template="hotel-breakfast", limit=2)
    group_offer = await publish(benefits)

    refused = await fails(offers(benefits, MALL).ClaimCoupon(claim(hotel_offer, member)))
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")
    await offers(benefits, HOTEL).ClaimCoupon(claim(hotel_offer, member))
    await offers(benefits, MALL).ClaimCoupon(claim(group_offer, member))
    assert len(await coupons_of(benefits, member)) == 2
    # A member's own token claims any offer, but only for itself.
    other = await benefits.points.member()
    mine = await offers(benefits, own_token(member)).ClaimCoupon(claim(hotel_offer, member))
    assert mine.coupon_offer.claimed == 2
    foreign = await fails(
        offers(benefits, own_token(member)).ClaimCoupon(claim(group_offer, other))
    )
    assert (foreign.code, foreign.reason) == (grpc.StatusCode.PERMISSION_DENIED, "MEMBER_MISMATCH")
    publishing = await fails(offers(benefits, own_token(member)).CreateCouponOffer(offer_request()))
    assert publishing.reason == "MEMBER_TOKEN_REFUSED"
    # A unit offers only its own templates and the group's.
    theirs = await fails(offers(benefits, MALL).CreateCouponOffer(offer_request("hotel-breakfast")))
    assert theirs.reason == "UNIT_MISMATCH"


async def test_offers_not_open_or_above_the_members_tier_are_refused(
    benefits: Benefits,
) -> None:
    member = await benefits.points.member()
    phone = offers(benefits, own_token(member))
    later = await publish(benefits, starts=timedelta(days=1))
    for_gold = await publish(benefits, minimum_tier="gold")

    not_open = await fails(phone.ClaimCoupon(claim(later, member)))
    assert (not_open.code, not_open.reason) == (FAILED_PRECONDITION, "OFFER_NOT_OPEN")
    assert not_open.metadata["claim_start_time"]
    low = await fails(phone.ClaimCoupon(claim(for_gold, member)))
    assert (low.code, low.reason) == (FAILED_PRECONDITION, "OFFER_TIER_NOT_MET")
    assert low.metadata["minimum_tier"] == "gold"
    scheduled = await phone.ListCouponOffers(
        offers_pb.ListCouponOffersRequest(
            state=offers_pb.COUPON_OFFER_STATE_SCHEDULED, member=member
        )
    )
    assert later in [o.name for o in scheduled.coupon_offers]
    assert await coupons_of(benefits, member) == []


async def test_bad_offers_and_claims_name_every_bad_field(benefits: Benefits) -> None:
    stub = offers(benefits)
    request = offer_request(available=0, limit=-1, lasts=timedelta(minutes=-5))
    request.coupon_offer.template = ""
    request.coupon_offer.ClearField("claim_start_time")
    bad = await fails(stub.CreateCouponOffer(request))
    assert (bad.code, bad.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert bad.fields == [
        "coupon_offer.template",
        "coupon_offer.available",
        "coupon_offer.per_member_limit",
        "coupon_offer.claim_start_time",
    ]
    ended = await fails(
        stub.CreateCouponOffer(offer_request(starts=timedelta(days=-2), lasts=timedelta(days=1)))
    )
    assert ended.fields == ["coupon_offer.claim_end_time"]
    tier = await fails(stub.CreateCouponOffer(offer_request(minimum_tier="bronze")))
    assert tier.fields == ["coupon_offer.minimum_tier"]
    unknown = await fails(stub.CreateCouponOffer(offer_request("no-such-template")))
    assert (unknown.code, unknown.reason) == (
        grpc.StatusCode.NOT_FOUND,
        "COUPON_TEMPLATE_NOT_FOUND",
    )

    member = await benefits.points.member()
    named = await fails(stub.ClaimCoupon(claim("offers/1", member)))
    assert named.fields == ["offer"]
    nobody = await fails(stub.ClaimCoupon(claim(await publish(benefits), "people/1")))
    assert nobody.fields == ["member"]
    gone = await fails(
        stub.ClaimCoupon(claim("couponOffers/00000000-0000-0000-0000-000000000000", member))
    )
    assert (gone.code, gone.reason) == (grpc.StatusCode.NOT_FOUND, "COUPON_OFFER_NOT_FOUND")
    without_id = offers_pb.ClaimCouponRequest(offer=await publish(benefits), member=member)
    no_id = await fails(stub.ClaimCoupon(without_id))
    assert no_id.fields == ["request_id"]
    unnamed = offers_pb.CouponOfferState.ValueType(99)  # a number the contract does not name
    state = await fails(stub.ListCouponOffers(offers_pb.ListCouponOffersRequest(state=unnamed)))
    assert state.fields == ["state"]


async def test_open_offers_are_paged_newest_first_each_once(benefits: Benefits) -> None:
    made = [await publish(benefits) for _ in range(3)]
    seen: list[str] = []
    token = ""
    while True:
        page = await offers(benefits, APP).ListCouponOffers(
            offers_pb.ListCouponOffersRequest(page_size=2, page_token=token)
        )
        assert len(page.coupon_offers) <= 2
        seen += [o.name for o in page.coupon_offers]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen))
    assert [o for o in seen if o in made] == made[::-1]


async def test_a_members_list_leaves_out_the_offers_it_may_not_claim(benefits: Benefits) -> None:
    member, other = await benefits.points.member(), await benefits.points.member()
    phone = offers(benefits, own_token(member))
    claimable = await publish(benefits, available=5, limit=2)
    at_limit = await publish(benefits, available=5)
    used_up = await publish(benefits, available=1)
    for_gold = await publish(benefits, minimum_tier="gold")
    await phone.ClaimCoupon(claim(claimable, member))
    await phone.ClaimCoupon(claim(at_limit, member))
    await offers(benefits, own_token(other)).ClaimCoupon(claim(used_up, other))

    seen: dict[str, offers_pb.CouponOffer] = {}
    token = ""
    while True:
        page = await phone.ListCouponOffers(
            offers_pb.ListCouponOffersRequest(member=member, page_size=1, page_token=token)
        )
        assert len(page.coupon_offers) <= 1
        seen |= {o.name: o for o in page.coupon_offers}
        token = page.next_page_token
        if not token:
            break
    assert claimable in seen and seen[claimable].member_claimed == 1
    assert not {at_limit, used_up, for_gold} & seen.keys()
    # Asked for OPEN offers, the member still sees every open one, with what it holds.
    every = await phone.ListCouponOffers(
        offers_pb.ListCouponOffersRequest(state=OPEN, member=member, page_size=200)
    )
    held = {o.name: o.member_claimed for o in every.coupon_offers}
    assert (held[at_limit], held[for_gold]) == (1, 0) and used_up not in held
