"""Coupon offers members claim themselves (优惠券领取): a unit publishes so many coupons of a
template, at most so many per member, within a claim window, perhaps from a tier up; each claim
issues one coupon to the member. The offer owns its rule: never more claims than it holds, nor
more per member than its limit. Pure rules, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from loyalty_kit.errors import FailedPrecondition, NotFound

MAX_AVAILABLE = 10_000_000
MAX_PER_MEMBER = 100
GRANT_PREFIX = "offer:"


class OfferState(StrEnum):
    SCHEDULED = "scheduled"
    OPEN = "open"
    EXHAUSTED = "exhausted"
    ENDED = "ended"


class CouponOfferNotFound(NotFound):
    reason = "COUPON_OFFER_NOT_FOUND"

    def __init__(self, offer_id: str) -> None:
        super().__init__(f"no coupon offer {offer_id!r}", metadata={"offer_id": offer_id})


class OfferNotOpen(FailedPrecondition):
    reason = "OFFER_NOT_OPEN"

    def __init__(self, offer: CouponOffer) -> None:
        super().__init__(
            "the offer takes claims from "
            f"{offer.claim_start.isoformat()} until {offer.claim_end.isoformat()}",
            metadata={
                "offer_id": offer.offer_id,
                "claim_start_time": offer.claim_start.isoformat(),
                "claim_end_time": offer.claim_end.isoformat(),
            },
        )


class OfferExhausted(FailedPrecondition):
    reason = "OFFER_EXHAUSTED"

    def __init__(self, offer: CouponOffer) -> None:
        super().__init__(
            f"all {offer.available} coupons of the offer are claimed",
            metadata={"offer_id": offer.offer_id, "available": str(offer.available)},
        )


class OfferLimitReached(FailedPrecondition):
    reason = "OFFER_LIMIT_REACHED"

    def __init__(self, offer: CouponOffer) -> None:
        super().__init__(
            f"a member claims at most {offer.per_member_limit} coupons of this offer",
            metadata={"offer_id": offer.offer_id, "per_member_limit": str(offer.per_member_limit)},
        )


class OfferTierNotMet(FailedPrecondition):
    reason = "OFFER_TIER_NOT_MET"

    def __init__(self, offer: CouponOffer, tier: str) -> None:
        super().__init__(
            f"the offer is for {offer.minimum_tier} members and above; the member is "
            f"{tier or 'without a tier'}",
            metadata={"offer_id": offer.offer_id, "minimum_tier": offer.minimum_tier, "tier": tier},
        )


def grant_prefix(offer_id: str) -> str:
    """The grant keys of an offer's coupons start so: a member's coupons under it are its
    claims (moved with the member on a merge, given back on an unmerge)."""
    return f"{GRANT_PREFIX}{offer_id}:"


def grant_key(offer_id: str, claim_id: str) -> str:
    """One claim's coupon: a grant of its own (a member may hold several of one offer)."""
    return f"{grant_prefix(offer_id)}{claim_id}"


@dataclass
class CouponOffer:
    offer_id: str
    template_code: str
    available: int
    per_member_limit: int
    claim_start: datetime
    claim_end: datetime
    minimum_tier: str  # "" for every member
    issuer_unit: str  # "" for an admin
    created_at: datetime
    claimed: int = 0

    @property
    def remaining(self) -> int:
        return self.available - self.claimed

    def state_at(self, now: datetime) -> OfferState:
        if now < self.claim_start:
            return OfferState.SCHEDULED
        if now >= self.claim_end:
            return OfferState.ENDED
        return OfferState.OPEN if self.remaining > 0 else OfferState.EXHAUSTED

    def check_open(self, now: datetime) -> None:
        """OfferNotOpen outside the claim window (a sold-out offer is open, and exhausted)."""
        if not self.claim_start <= now < self.claim_end:
            raise OfferNotOpen(self)

    def check_tier(self, tier_rank: int | None, minimum_rank: int | None, tier: str) -> None:
        """OfferTierNotMet for a member below the offer's tier (ranks on the catalogue's
        ladder; a tier the ladder no longer names is below every tier)."""
        if not self.minimum_tier or minimum_rank is None:
            return
        if tier_rank is None or tier_rank < minimum_rank:
            raise OfferTierNotMet(self, tier)

    def claimable_by(
        self, member_claimed: int, tier_rank: int | None, minimum_rank: int | None, now: datetime
    ) -> bool:
        """Whether a member holding `member_claimed` of its coupons, on `tier_rank`, would be
        given one now: the rules of `check_tier` and `claim`, asked without a refusal."""
        below = tier_rank is None or (minimum_rank is not None and tier_rank < minimum_rank)
        if self.minimum_tier and minimum_rank is not None and below:
            return False
        return (
            self.claim_start <= now < self.claim_end
            and member_claimed < self.per_member_limit
            and self.claimed < self.available
        )

    def claim(self, member_claimed: int, now: datetime) -> None:
        """One more claim by a member who holds `member_claimed` of the offer's coupons: within
        the window, the member's limit and what is left; the claim is counted."""
        self.check_open(now)
        if member_claimed >= self.per_member_limit:
            raise OfferLimitReached(self)
        if self.claimed >= self.available:
            raise OfferExhausted(self)
        self.claimed += 1
