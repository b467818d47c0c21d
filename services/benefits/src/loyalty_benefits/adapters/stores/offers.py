"""Coupon offers members claim: the offer, with the count of its claims. A claim locks the
offer's row for its transaction, so claims of one offer queue there and each sees the count
(and the member's coupons of the offer) as the one before left them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from loyalty_benefits.adapters.stores.base import Store
from loyalty_benefits.domain.offers import CouponOffer, OfferState


def _offer(row: Any) -> CouponOffer:
    return CouponOffer(
        offer_id=str(row["offer_id"]),
        template_code=row["template_code"],
        available=row["available"],
        per_member_limit=row["per_member_limit"],
        claim_start=row["claim_start"],
        claim_end=row["claim_end"],
        minimum_tier=row["minimum_tier"],
        issuer_unit=row["issuer_unit"],
        created_at=row["created_at"],
        claimed=row["claimed"],
    )


class CouponOffers(Store):
    async def add(self, o: CouponOffer) -> None:
        conn = await self.conn()
        await conn.execute(
            "INSERT INTO coupon_offers (offer_id, template_code, available, per_member_limit, "
            "claim_start, claim_end, minimum_tier, issuer_unit, claimed, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            o.offer_id,
            o.template_code,
            o.available,
            o.per_member_limit,
            o.claim_start,
            o.claim_end,
            o.minimum_tier,
            o.issuer_unit,
            o.claimed,
            o.created_at,
        )

    async def get(self, offer_id: str, *, lock: bool = False) -> CouponOffer | None:
        conn = await self.conn()
        row = await conn.fetchrow(
            "SELECT * FROM coupon_offers WHERE offer_id = $1" + (" FOR UPDATE" if lock else ""),
            offer_id,
        )
        return None if row is None else _offer(row)

    async def save_claimed(self, o: CouponOffer) -> None:
        conn = await self.conn()
        await conn.execute(
            "UPDATE coupon_offers SET claimed = $2 WHERE offer_id = $1", o.offer_id, o.claimed
        )

    async def page(
        self, state: OfferState, now: datetime, before: tuple[datetime, str] | None, limit: int
    ) -> list[CouponOffer]:
        """Offers in `state` at `now`, newest first (by creation, then ID), those created
        before `before`."""
        conn = await self.conn()
        rows = await conn.fetch(
            "SELECT * FROM coupon_offers WHERE CASE $1::text "
            "WHEN 'scheduled' THEN $2 < claim_start "
            "WHEN 'ended' THEN claim_end <= $2 "
            "WHEN 'exhausted' THEN claim_start <= $2 AND $2 < claim_end AND claimed >= available "
            "ELSE claim_start <= $2 AND $2 < claim_end AND claimed < available END "
            "AND ($3::timestamptz IS NULL OR (created_at, offer_id) < ($3, $4::uuid)) "
            "ORDER BY created_at DESC, offer_id DESC LIMIT $5",
            state.value,
            now,
            before[0] if before else None,
            before[1] if before else None,
            limit,
        )
        return [_offer(r) for r in rows]
