"""Members' coupons: issued (one by one, in batches, once per grant), redeemed and released,
listed, and moved, given back or erased with their member."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from loyalty_kit.money import Amount

from loyalty_benefits.adapters.stores.base import ANONYMOUS_MEMBER, Store
from loyalty_benefits.domain.catalogue import (
    CouponKind,
)
from loyalty_benefits.domain.coupons import Coupon, CouponState


def _amount(currency: str, value: Decimal | None) -> Amount | None:
    return None if value is None else Amount(currency, value)


def _coupon(row: Any) -> Coupon:
    currency = row["currency"]
    return Coupon(
        code=row["code"],
        member_id=str(row["member_id"]),
        template_code=row["template_code"],
        name_zh=row["name_zh"],
        name_en=row["name_en"],
        kind=CouponKind(row["kind"]),
        amount=_amount(currency, row["amount"]),
        percentage=row["percentage"],
        minimum_spend=_amount(currency, row["minimum_spend"]),
        unit=row["unit"],
        valid_from=row["valid_from"],
        valid_until=row["valid_until"],
        source=row["source"],
        issued_at=row["issued_at"],
        state=CouponState(row["state"]),
        redeemed_at=row["redeemed_at"],
        redeemed_unit=row["redeemed_unit"],
        redeemed_order_id=row["redeemed_order_id"],
        discount=_amount(row["discount_currency"], row["discount"]),
    )


def _currency(coupon: Coupon) -> str:
    """The currency of a coupon's terms ('' for a percentage off any order)."""
    terms = coupon.amount or coupon.minimum_spend
    return terms.currency if terms else ""


class Coupons(Store):
    async def add(self, coupon: Coupon, grant_key: str | None = None) -> bool:
        """False when the grant was issued to this member already (nothing is written)."""
        conn = await self.conn()
        done = await conn.fetchval(
            "INSERT INTO coupons (member_id, code, template_code, name_zh, name_en, kind, "
            "currency, amount, percentage, minimum_spend, unit, valid_from, valid_until, source, "
            "grant_key, issued_at, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
            "$12, $13, $14, $15, $16, $17) "
            "ON CONFLICT (member_id, grant_key) WHERE grant_key IS NOT NULL DO NOTHING "
            "RETURNING true",
            coupon.member_id,
            coupon.code,
            coupon.template_code,
            coupon.name_zh,
            coupon.name_en,
            coupon.kind.value,
            _currency(coupon),
            coupon.amount.value if coupon.amount else None,
            coupon.percentage,
            coupon.minimum_spend.value if coupon.minimum_spend else None,
            coupon.unit,
            coupon.valid_from,
            coupon.valid_until,
            coupon.source,
            grant_key,
            coupon.issued_at,
            coupon.state.value,
        )
        return bool(done)

    async def add_many(self, coupons: list[Coupon]) -> None:
        """Plain issues (no grant key), in one round trip."""
        conn = await self.conn()
        await conn.executemany(
            "INSERT INTO coupons (member_id, code, template_code, name_zh, name_en, kind, "
            "currency, amount, percentage, minimum_spend, unit, valid_from, valid_until, source, "
            "issued_at, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
            "$14, $15, $16)",
            [
                (
                    c.member_id,
                    c.code,
                    c.template_code,
                    c.name_zh,
                    c.name_en,
                    c.kind.value,
                    _currency(c),
                    c.amount.value if c.amount else None,
                    c.percentage,
                    c.minimum_spend.value if c.minimum_spend else None,
                    c.unit,
                    c.valid_from,
                    c.valid_until,
                    c.source,
                    c.issued_at,
                    c.state.value,
                )
                for c in coupons
            ],
        )

    async def add_granted(self, coupons: list[Coupon], grant_key: str) -> list[Coupon]:
        """Coupons of one grant for many members in one statement; those the member had been
        granted already are skipped. The coupons written."""
        if not coupons:
            return []
        conn = await self.conn()
        first = coupons[0]  # one template, issued at one moment: the terms are the same
        written = await conn.fetch(
            "INSERT INTO coupons (member_id, code, template_code, name_zh, name_en, kind, "
            "currency, amount, percentage, minimum_spend, unit, valid_from, valid_until, source, "
            "grant_key, issued_at, state) "
            "SELECT m, c, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15, $16 "
            "FROM unnest($1::uuid[], $2::text[]) AS u(m, c) "
            "ON CONFLICT (member_id, grant_key) WHERE grant_key IS NOT NULL DO NOTHING "
            "RETURNING code",
            [c.member_id for c in coupons],
            [c.code for c in coupons],
            first.template_code,
            first.name_zh,
            first.name_en,
            first.kind.value,
            _currency(first),
            first.amount.value if first.amount else None,
            first.percentage,
            first.minimum_spend.value if first.minimum_spend else None,
            first.unit,
            first.valid_from,
            first.valid_until,
            grant_key,
            first.issued_at,
            first.state.value,
        )
        codes = {r["code"] for r in written}
        return [c for c in coupons if c.code in codes]

    async def get(self, member_id: str, code: str, *, lock: bool = False) -> Coupon | None:
        conn = await self.conn()
        row = await conn.fetchrow(
            "SELECT * FROM coupons WHERE member_id = $1 AND code = $2"
            + (" FOR UPDATE" if lock else ""),
            member_id,
            code,
        )
        return None if row is None else _coupon(row)

    async def by_grant(self, member_id: str, grant_key: str) -> Coupon | None:
        conn = await self.conn()
        row = await conn.fetchrow(
            "SELECT * FROM coupons WHERE member_id = $1 AND grant_key = $2", member_id, grant_key
        )
        return None if row is None else _coupon(row)

    async def granted_under(self, member_id: str, prefixes: list[str]) -> dict[str, int]:
        """How many coupons the member holds whose grant key starts with each prefix (an
        offer's claims: `offer:{offer_id}:`), those moved to it by a merge too."""
        conn = await self.conn()
        rows = await conn.fetch(
            "SELECT p, count(c.code) AS n FROM unnest($2::text[]) AS p "
            "LEFT JOIN coupons c ON c.member_id = $1 AND starts_with(c.grant_key, p) "
            "GROUP BY p",
            member_id,
            prefixes,
        )
        return {r["p"]: r["n"] for r in rows}

    async def save_redemption(self, coupon: Coupon) -> None:
        """The coupon's state and redemption (when, where, order, discount): set by a
        redemption, cleared by a release."""
        conn = await self.conn()
        await conn.execute(
            "UPDATE coupons SET state = $3, redeemed_at = $4, redeemed_unit = $5, "
            "redeemed_order_id = $6, discount = $7, discount_currency = $8 "
            "WHERE member_id = $1 AND code = $2",
            coupon.member_id,
            coupon.code,
            coupon.state.value,
            coupon.redeemed_at,
            coupon.redeemed_unit,
            coupon.redeemed_order_id,
            coupon.discount.value if coupon.discount else None,
            coupon.discount.currency if coupon.discount else "",
        )

    async def of_member(
        self,
        member_id: str,
        state: CouponState | None,
        now: datetime,
        before: int | None,
        limit: int,
    ) -> list[tuple[int, Coupon]]:
        """Newest first, after the position `before` (a seq), optionally in one state."""
        conn = await self.conn()
        rows = await conn.fetch(
            "SELECT * FROM coupons WHERE member_id = $1 AND ($2::bigint IS NULL OR seq < $2) "
            "AND CASE $3::text WHEN 'issued' THEN state = 'issued' AND valid_until > $4 "
            "WHEN 'expired' THEN state = 'issued' AND valid_until <= $4 "
            "WHEN 'redeemed' THEN state = 'redeemed' ELSE true END "
            "ORDER BY seq DESC LIMIT $5",
            member_id,
            before,
            state.value if state else None,
            now,
            limit,
        )
        return [(r["seq"], _coupon(r)) for r in rows]

    async def move_member(self, absorbed: str, survivor: str) -> None:
        """A merge: the absorbed member's coupons become the survivor's. A grant both received
        (two welcome gifts for gold) stays with both coupons; the moved one's grant key is
        marked as merged so each grant stays unique per member."""
        conn = await self.conn()
        await conn.execute(
            "UPDATE coupons AS a SET grant_key = a.grant_key || '#merged:' || a.member_id "
            "WHERE a.member_id = $1 AND a.grant_key IS NOT NULL AND EXISTS ("
            "SELECT 1 FROM coupons s WHERE s.member_id = $2 AND s.grant_key = a.grant_key)",
            absorbed,
            survivor,
        )
        await conn.execute(
            "UPDATE coupons SET member_id = $2, "
            "origin_member_id = coalesce(origin_member_id, member_id) WHERE member_id = $1",
            absorbed,
            survivor,
        )

    async def give_back_member(self, survivor: str, restored: str) -> None:
        """An unmerge: the coupons that came from `restored` are its own again, their grant
        keys as they were before the merge."""
        conn = await self.conn()
        await conn.execute(
            "UPDATE coupons SET member_id = $2, origin_member_id = NULL, "
            "grant_key = CASE WHEN grant_key LIKE '%#merged:' || $2::text "
            "THEN left(grant_key, length(grant_key) - length('#merged:' || $2::text)) "
            "ELSE grant_key END "
            "WHERE member_id = $1 AND origin_member_id = $2",
            survivor,
            restored,
        )

    async def erase_member(self, member_id: str) -> None:
        """Erasure: unused coupons are void and go; redeemed ones stay as anonymous counts."""
        conn = await self.conn()
        await conn.execute(
            "DELETE FROM coupons WHERE member_id = $1 AND state <> 'redeemed'", member_id
        )
        await conn.execute(
            "UPDATE coupons SET member_id = $2, grant_key = NULL WHERE member_id = $1",
            member_id,
            ANONYMOUS_MEMBER,
        )
