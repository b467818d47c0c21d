"""Use cases of coupon offers members claim themselves, each inside one unit of work. A claim
locks the offer's row, counts the member's coupons of the offer, lets the offer decide
(`CouponOffer.claim`) and issues the coupon as every grant is issued (`handlers.grant_coupon`),
all in one transaction: concurrent claims of one offer queue on its row."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from loyalty_kit.caller import check_unit
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.kernel.units import GROUP

from loyalty_benefits.domain import events
from loyalty_benefits.domain.coupons import Coupon, issuable_window
from loyalty_benefits.domain.entitlements import tier_of
from loyalty_benefits.domain.errors import CouponTemplateNotFound
from loyalty_benefits.domain.offers import (
    CouponOffer,
    CouponOfferNotFound,
    OfferState,
    grant_key,
    grant_prefix,
)
from loyalty_benefits.service_layer.handlers import active_member, catalogue, grant_coupon
from loyalty_benefits.service_layer.ports import BenefitsWork


@dataclass(frozen=True)
class NewOffer:
    template_code: str
    available: int
    per_member_limit: int
    claim_start: datetime
    claim_end: datetime
    minimum_tier: str


# A member's page of claimable offers reads at most this many batches of open offers, then
# answers what it found with where to go on (fewer than asked, never a long scan).
SCAN_BATCHES = 5


@dataclass(frozen=True)
class ClaimablePage:
    offers: list[CouponOffer]
    held: dict[str, int]  # the member's coupons of each offer, by offer ID
    resume_after: tuple[datetime, str] | None  # where the next page begins; None: the end


@dataclass(frozen=True)
class Claimed:
    coupon: Coupon
    offer: CouponOffer
    member_claimed: int  # the member's coupons of the offer, this one included


async def create(
    uow: BenefitsWork, new: NewOffer, issuer_unit: str | None, now: datetime
) -> CouponOffer:
    """Publish an offer. `issuer_unit`: the unit publishing (None: an admin), which may only
    offer coupons of its own or the group's templates. The template must still be issuable
    when the window opens, and the tier one of the catalogue's."""
    rules = await catalogue(uow)
    template = rules.template(new.template_code)
    if template is None:
        raise CouponTemplateNotFound(new.template_code)
    if template.unit:  # a group-wide template may be offered by any unit
        check_unit(template.unit, issuer_unit)
    if new.minimum_tier and rules.rank(new.minimum_tier) is None:
        raise InvalidArgument.of(
            [FieldViolation("coupon_offer.minimum_tier", "a tier of the catalogue, or empty")]
        )
    issuable_window(template, max(now, new.claim_start))
    offer = CouponOffer(
        offer_id=str(uuid.uuid4()),
        template_code=template.code,
        available=new.available,
        per_member_limit=new.per_member_limit,
        claim_start=new.claim_start,
        claim_end=new.claim_end,
        minimum_tier=new.minimum_tier,
        issuer_unit=issuer_unit or "",
        created_at=now,
    )
    await uow.offers.add(offer)
    return offer


async def get(uow: BenefitsWork, offer_id: str) -> CouponOffer:
    found = await uow.offers.get(offer_id)
    if found is None:
        raise CouponOfferNotFound(offer_id)
    return found


async def page(
    uow: BenefitsWork,
    state: OfferState,
    now: datetime,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[CouponOffer]:
    return await uow.offers.page(state, now, before, limit)


async def claimable_page(
    uow: BenefitsWork,
    member_id: str,
    now: datetime,
    before: tuple[datetime, str] | None,
    size: int,
) -> ClaimablePage:
    """The open offers the member may claim now, newest first: those at the member's limit
    and those above the member's tier are left out (a claim would be refused). Reads batches
    of open offers until the page is full, at most SCAN_BATCHES of them."""
    rules = await uow.catalogue.latest()
    tier_rank: int | None = None
    if rules is not None:
        tier_rank = rules.rank(tier_of(rules, await uow.members.get(member_id)))
    kept: list[CouponOffer] = []
    held: dict[str, int] = {}
    for _ in range(SCAN_BATCHES):
        batch = await uow.offers.page(OfferState.OPEN, now, before, size + 1)
        counts = await member_claimed(uow, member_id, batch)
        for offer in batch:
            minimum = rules.rank(offer.minimum_tier) if rules and offer.minimum_tier else None
            if not offer.claimable_by(counts[offer.offer_id], tier_rank, minimum, now):
                continue
            if len(kept) == size:  # one more to claim: the next page begins after the last
                return ClaimablePage(kept, held, (kept[-1].created_at, kept[-1].offer_id))
            kept.append(offer)
            held[offer.offer_id] = counts[offer.offer_id]
        if len(batch) <= size:
            return ClaimablePage(kept, held, None)
        before = (batch[-1].created_at, batch[-1].offer_id)
    return ClaimablePage(kept, held, before)


async def member_claimed(
    uow: BenefitsWork, member_id: str, offers: list[CouponOffer]
) -> dict[str, int]:
    """The member's coupons of each offer, by offer ID."""
    prefixes = {o.offer_id: grant_prefix(o.offer_id) for o in offers}
    held = await uow.coupons.granted_under(member_id, list(prefixes.values()))
    return {offer_id: held.get(prefix, 0) for offer_id, prefix in prefixes.items()}


async def claim(
    uow: BenefitsWork, offer_id: str, member_id: str, caller_unit: str | None, now: datetime
) -> Claimed:
    """One coupon of the offer for the member. `caller_unit`: the unit's app claiming for the
    member, which may claim only its own unit's offers and the group's (None: an admin or the
    member's own token; "group": the group's own app, any offer). Refusals: OFFER_NOT_OPEN,
    OFFER_TIER_NOT_MET, OFFER_LIMIT_REACHED, OFFER_EXHAUSTED, and the member's state
    (MEMBER_SUSPENDED...)."""
    offer = await uow.offers.get(offer_id, lock=True)
    if offer is None:
        raise CouponOfferNotFound(offer_id)
    if offer.issuer_unit not in ("", GROUP) and caller_unit != GROUP:
        check_unit(offer.issuer_unit, caller_unit)  # the group's offers: any unit's app
    await active_member(uow, member_id)
    offer.check_open(now)
    rules = await catalogue(uow)
    if offer.minimum_tier:
        tier = tier_of(rules, await uow.members.get(member_id))
        offer.check_tier(rules.rank(tier), rules.rank(offer.minimum_tier), tier)
    held = (await member_claimed(uow, member_id, [offer]))[offer.offer_id]
    offer.claim(held, now)
    coupon = await grant_coupon(
        uow, rules, offer.template_code, member_id, grant_key(offer_id, str(uuid.uuid4())), now
    )
    await uow.offers.save_claimed(offer)
    uow.record(
        events.CouponClaimed(
            member_id,
            offer.offer_id,
            coupon.code,
            coupon.template_code,
            offer.issuer_unit,
            offer.claimed,
            now,
        )
    )
    return Claimed(coupon, offer, held + 1)
