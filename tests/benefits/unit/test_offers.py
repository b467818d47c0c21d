"""Coupon offers members claim themselves: the offer's rule (never more claims than it holds,
nor more per member than its limit, only within its window), as a property over random claims,
and the use cases on the fake unit of work."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from loyalty_benefits.domain import events
from loyalty_benefits.domain.errors import CouponTemplateNotFound
from loyalty_benefits.domain.offers import (
    CouponOffer,
    CouponOfferNotFound,
    OfferExhausted,
    OfferLimitReached,
    OfferNotOpen,
    OfferState,
    OfferTierNotMet,
    grant_prefix,
)
from loyalty_benefits.service_layer import handlers, offers
from loyalty_kit.errors import (
    InvalidArgument,
    MemberNotActive,
    PermissionDenied,
)

from tests.benefits.unit.conftest import ANN, BOB, T0, Benefits

START = T0  # the clock of the fake service


def offer(available: int = 3, limit: int = 1, hours: int = 48, tier: str = "") -> CouponOffer:
    return CouponOffer(
        offer_id="00000000-0000-0000-0000-00000000000f",
        template_code="birthday-gift",
        available=available,
        per_member_limit=limit,
        claim_start=START,
        claim_end=START + timedelta(hours=hours),
        minimum_tier=tier,
        issuer_unit="",
        created_at=START,
    )


# --- the rule, as a property -------------------------------------------------------------------


@given(
    available=st.integers(1, 8),
    limit=st.integers(1, 3),
    claims=st.lists(st.tuples(st.integers(0, 4), st.integers(-5, 60)), max_size=40),
)
def test_claims_never_exceed_the_offer_nor_a_members_limit(
    available: int, limit: int, claims: list[tuple[int, int]]
) -> None:
    """Random members claiming at random hours (some before or after the 48-hour window):
    claimed <= available and each member <= limit, and every refusal is the right one."""
    rule = offer(available, limit)
    held: dict[int, int] = {}
    for member, hour in claims:
        now = START + timedelta(hours=hour)
        before, mine = rule.claimed, held.get(member, 0)
        try:
            rule.claim(mine, now)
        except OfferNotOpen:
            assert not 0 <= hour < 48
        except OfferLimitReached:
            assert 0 <= hour < 48 and mine == limit
        except OfferExhausted:
            assert 0 <= hour < 48 and mine < limit and before == available
        else:
            assert 0 <= hour < 48 and mine < limit and before < available
            held[member] = mine + 1
        assert rule.claimed == sum(held.values()) <= available
        assert all(n <= limit for n in held.values())
    open_claims = [m for m, h in claims if 0 <= h < 48]
    wanted = sum(min(open_claims.count(m), limit) for m in set(open_claims))
    assert rule.claimed == min(available, wanted)  # nobody refused while something was left


@given(
    available=st.integers(1, 3),
    claimed=st.integers(0, 3),
    limit=st.integers(1, 3),
    mine=st.integers(0, 3),
    hour=st.integers(-5, 60),
)
def test_an_offer_is_claimable_exactly_when_a_claim_would_be_taken(
    available: int, claimed: int, limit: int, mine: int, hour: int
) -> None:
    rule = offer(available, limit)
    rule.claimed = min(claimed, available)
    now = START + timedelta(hours=hour)
    try:
        rule.claim(mine, now)
        taken = True
    except (OfferNotOpen, OfferLimitReached, OfferExhausted):
        taken = False
    rule.claimed = min(claimed, available)
    assert rule.claimable_by(mine, None, None, now) is taken


def test_an_offer_above_the_members_tier_is_not_claimable() -> None:
    rule = offer(tier="gold")
    assert not rule.claimable_by(0, 0, 1, START)
    assert not rule.claimable_by(0, None, 1, START)  # a tier the ladder no longer names
    assert rule.claimable_by(0, 1, 1, START) and rule.claimable_by(0, 2, 1, START)


def test_an_offer_says_where_it_stands() -> None:
    rule = offer(available=1)
    assert rule.state_at(START - timedelta(seconds=1)) is OfferState.SCHEDULED
    assert rule.state_at(START) is OfferState.OPEN
    rule.claim(0, START)
    assert (rule.state_at(START), rule.remaining) == (OfferState.EXHAUSTED, 0)
    assert rule.state_at(START + timedelta(hours=48)) is OfferState.ENDED


# --- the use cases -----------------------------------------------------------------------------


def new(**more: object) -> offers.NewOffer:
    values: dict[str, object] = {
        "template_code": "birthday-gift",
        "available": 2,
        "per_member_limit": 1,
        "claim_start": START,
        "claim_end": START + timedelta(days=7),
        "minimum_tier": "",
    }
    values.update(more)
    return offers.NewOffer(**values)  # type: ignore[arg-type]


async def published(benefits: Benefits, **more: object) -> CouponOffer:
    return await benefits(offers.create, new(**more), None, benefits.now)


async def test_a_claim_issues_the_coupon_as_a_grant_of_the_offer(benefits: Benefits) -> None:
    made = await published(benefits)

    claimed = await benefits(offers.claim, made.offer_id, ANN, None, benefits.now)

    assert (claimed.offer.claimed, claimed.offer.remaining, claimed.member_claimed) == (1, 1, 1)
    assert benefits.coupons(ANN) == [claimed.coupon]
    assert claimed.coupon.source.startswith(grant_prefix(made.offer_id))
    assert claimed.coupon.template_code == "birthday-gift"
    assert [e for e in benefits.events if isinstance(e, events.CouponIssued)] == [
        claimed.coupon.issued(benefits.now)
    ]
    assert [e for e in benefits.events if isinstance(e, events.CouponClaimed)] == [
        events.CouponClaimed(
            ANN, made.offer_id, claimed.coupon.code, "birthday-gift", "", 1, benefits.now
        )
    ]
    assert (await benefits(offers.get, made.offer_id)).claimed == 1


async def test_a_member_claims_up_to_the_limit_and_the_last_coupon_goes_once(
    benefits: Benefits,
) -> None:
    made = await published(benefits, available=3, per_member_limit=2)
    await benefits(offers.claim, made.offer_id, ANN, None, benefits.now)
    await benefits(offers.claim, made.offer_id, ANN, None, benefits.now)
    with pytest.raises(OfferLimitReached):
        await benefits(offers.claim, made.offer_id, ANN, None, benefits.now)
    await benefits(offers.claim, made.offer_id, BOB, None, benefits.now)
    with pytest.raises(OfferExhausted):
        await benefits(offers.claim, made.offer_id, BOB, None, benefits.now)

    assert (len(benefits.coupons(ANN)), len(benefits.coupons(BOB))) == (2, 1)
    assert (await benefits(offers.get, made.offer_id)).claimed == 3
    held = await benefits(offers.member_claimed, ANN, [made])
    assert held == {made.offer_id: 2}


async def test_claims_outside_the_window_or_below_the_tier_are_refused(
    benefits: Benefits,
) -> None:
    later = await published(benefits, claim_start=START + timedelta(days=1))
    with pytest.raises(OfferNotOpen):
        await benefits(offers.claim, later.offer_id, ANN, None, benefits.now)
    for_gold = await published(benefits, minimum_tier="gold")
    with pytest.raises(OfferTierNotMet):
        await benefits(offers.claim, for_gold.offer_id, ANN, None, benefits.now)
    await benefits.tier(ANN, "platinum")
    await benefits(offers.claim, for_gold.offer_id, ANN, None, benefits.now)
    assert (await benefits(offers.get, later.offer_id)).claimed == 0


async def test_a_suspended_member_claims_nothing(benefits: Benefits) -> None:
    made = await published(benefits)
    await benefits(handlers.on_member_suspended, ANN, benefits.now)
    with pytest.raises(MemberNotActive):
        await benefits(offers.claim, made.offer_id, ANN, None, benefits.now)
    assert (await benefits(offers.get, made.offer_id)).claimed == 0


async def test_a_unit_offers_and_claims_only_its_own_and_the_groups(benefits: Benefits) -> None:
    with pytest.raises(PermissionDenied):
        await benefits(offers.create, new(template_code="cinema-ticket"), "mall", benefits.now)
    cinema = await benefits(
        offers.create, new(template_code="cinema-ticket"), "cinema", benefits.now
    )
    with pytest.raises(PermissionDenied):
        await benefits(offers.claim, cinema.offer_id, ANN, "mall", benefits.now)
    await benefits(offers.claim, cinema.offer_id, ANN, "cinema", benefits.now)
    group = await published(benefits)
    await benefits(offers.claim, group.offer_id, ANN, "mall", benefits.now)


async def test_an_offer_needs_a_known_template_and_tier(benefits: Benefits) -> None:
    with pytest.raises(CouponTemplateNotFound):
        await published(benefits, template_code="no-such")
    with pytest.raises(InvalidArgument) as raised:
        await published(benefits, minimum_tier="bronze")
    assert [v.field for v in raised.value.field_violations] == ["coupon_offer.minimum_tier"]
    with pytest.raises(CouponOfferNotFound):
        await benefits(offers.claim, "00000000-0000-0000-0000-000000000000", ANN, None, START)


async def test_open_offers_are_listed_newest_first(benefits: Benefits) -> None:
    first = await published(benefits, available=1)
    benefits.later(minutes=1)
    second = await benefits(offers.create, new(), None, benefits.now)
    scheduled = await benefits(
        offers.create, new(claim_start=START + timedelta(days=2)), None, benefits.now
    )
    await benefits(offers.claim, first.offer_id, ANN, None, benefits.now)

    listed = await benefits(offers.page, OfferState.OPEN, benefits.now, None, 10)
    assert [o.offer_id for o in listed] == [second.offer_id]
    exhausted = await benefits(offers.page, OfferState.EXHAUSTED, benefits.now, None, 10)
    assert [o.offer_id for o in exhausted] == [first.offer_id]
    later = await benefits(offers.page, OfferState.SCHEDULED, benefits.now, None, 10)
    assert [o.offer_id for o in later] == [scheduled.offer_id]


async def test_a_survivor_holds_the_claims_of_the_member_it_absorbed(benefits: Benefits) -> None:
    """Both claimed the offer (limit 2 each); after the merge the survivor holds both
    coupons and may claim no more; an unmerge gives the absorbed member its claim back."""
    made = await published(benefits, available=10, per_member_limit=2)
    await benefits(offers.claim, made.offer_id, ANN, None, benefits.now)
    await benefits(offers.claim, made.offer_id, BOB, None, benefits.now)

    await benefits(handlers.on_member_merged, ANN, BOB, benefits.now)

    assert await benefits(offers.member_claimed, ANN, [made]) == {made.offer_id: 2}
    with pytest.raises(OfferLimitReached):
        await benefits(offers.claim, made.offer_id, ANN, None, benefits.now)
    await benefits(handlers.on_member_unmerged, ANN, BOB, benefits.now)
    assert await benefits(offers.member_claimed, ANN, [made]) == {made.offer_id: 1}
    await benefits(offers.claim, made.offer_id, BOB, None, benefits.now)
    assert (await benefits(offers.get, made.offer_id)).claimed == 3


async def test_a_members_page_leaves_out_what_the_member_may_not_claim(
    benefits: Benefits,
) -> None:
    claimable = await published(benefits, available=5, per_member_limit=2)
    benefits.later(minutes=1)
    at_limit = await benefits(offers.create, new(available=5), None, benefits.now)
    benefits.later(minutes=1)
    used_up = await benefits(offers.create, new(available=1), None, benefits.now)
    benefits.later(minutes=1)
    for_gold = await benefits(offers.create, new(minimum_tier="gold"), None, benefits.now)
    await benefits(offers.claim, claimable.offer_id, ANN, None, benefits.now)
    await benefits(offers.claim, at_limit.offer_id, ANN, None, benefits.now)
    await benefits(offers.claim, used_up.offer_id, BOB, None, benefits.now)

    page = await benefits(offers.claimable_page, ANN, benefits.now, None, 10)
    assert [o.offer_id for o in page.offers] == [claimable.offer_id]
    assert (page.held, page.resume_after) == ({claimable.offer_id: 1}, None)
    seen = await benefits(offers.claimable_page, BOB, benefits.now, None, 1)
    assert [o.offer_id for o in seen.offers] == [at_limit.offer_id]
    assert seen.resume_after == (at_limit.created_at, at_limit.offer_id)
    rest = await benefits(offers.claimable_page, BOB, benefits.now, seen.resume_after, 1)
    assert [o.offer_id for o in rest.offers] == [claimable.offer_id]
    assert rest.resume_after is None
    await benefits.tier(ANN, "gold")
    promoted = await benefits(offers.claimable_page, ANN, benefits.now, None, 10)
    assert [o.offer_id for o in promoted.offers] == [for_gold.offer_id, claimable.offer_id]
