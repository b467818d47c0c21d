"""The benefits service's tables (SQL on the asyncpg connection of the unit of work's
transaction)."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
from loyalty_kit.db import driver_connection
from loyalty_kit.money import Amount
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_benefits.domain.catalogue import (
    Catalogue,
    CouponKind,
    catalogue_from_json,
    catalogue_to_json,
)
from loyalty_benefits.domain.coupons import Coupon, CouponState
from loyalty_benefits.domain.entitlements import Consumption, MemberTier
from loyalty_benefits.domain.issuances import CouponIssuance, IssuanceState
from loyalty_benefits.domain.members import InactiveMember, MemberState
from loyalty_benefits.domain.rewards import Redemption, RedemptionState


class _Store:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def conn(self) -> asyncpg.Connection:
        return await driver_connection(self.session)


class CatalogueCache:
    """The catalogue in force as last read, one per service process (and database): versions
    never change once published, so only a newer version is read and parsed again. Callers
    treat the catalogue as read-only."""

    def __init__(self) -> None:
        self.catalogue: Catalogue | None = None


class CatalogueStore(_Store):
    def __init__(self, session: AsyncSession, cache: CatalogueCache | None = None) -> None:
        super().__init__(session)
        self.cache = cache or CatalogueCache()

    async def latest(self) -> Catalogue | None:
        """The latest version: one round trip, the document sent only when it is not the one
        cached (every query of the service reads it)."""
        conn = await self.conn()
        cached = self.cache.catalogue
        row = await conn.fetchrow(
            "SELECT version, created_at, CASE WHEN version = $1 THEN NULL ELSE document END "
            "AS document FROM catalogue_versions ORDER BY version DESC LIMIT 1",
            cached.version if cached is not None else None,
        )
        if row is None:
            return None
        if cached is not None and row["document"] is None:
            return cached
        document = row["document"]  # the engine's jsonb codec may have decoded it already
        found = catalogue_from_json(
            row["version"],
            row["created_at"],
            json.loads(document) if isinstance(document, str) else document,
        )
        if cached is None or found.version > cached.version:
            self.cache.catalogue = found
        return found

    async def add(self, catalogue: Catalogue) -> tuple[int, datetime]:
        conn = await self.conn()
        await conn.execute("LOCK TABLE catalogue_versions IN EXCLUSIVE MODE")
        row = await conn.fetchrow(
            "INSERT INTO catalogue_versions (version, document) "
            "SELECT coalesce(max(version), 0) + 1, $1::jsonb FROM catalogue_versions "
            "RETURNING version, created_at",
            json.dumps(catalogue_to_json(catalogue)),
        )
        assert row is not None
        return int(row["version"]), row["created_at"]


# Rows of erased members keep their counts under this member ID (none of them is a person).
ANONYMOUS_MEMBER = "00000000-0000-0000-0000-000000000000"


class MemberTiers(_Store):
    async def get(self, member_id: str, *, lock: bool = False) -> MemberTier | None:
        conn = await self.conn()
        row = await conn.fetchrow(
            "SELECT tier, effective_at, tier_year_end FROM member_tiers WHERE member_id = $1"
            + (" FOR UPDATE" if lock else ""),
            member_id,
        )
        if row is None:
            return None
        return MemberTier(member_id, row["tier"], row["effective_at"], row["tier_year_end"])

    async def save(self, member: MemberTier) -> None:
        conn = await self.conn()
        await conn.execute(
            "INSERT INTO member_tiers (member_id, tier, effective_at, tier_year_end) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (member_id) DO UPDATE SET tier = EXCLUDED.tier, "
            "effective_at = EXCLUDED.effective_at, tier_year_end = EXCLUDED.tier_year_end",
            member.member_id,
            member.tier,
            member.effective_at,
            member.tier_year_end,
        )

    async def forget(self, member_id: str) -> None:
        conn = await self.conn()
        await conn.execute("DELETE FROM member_tiers WHERE member_id = $1", member_id)


def _inactive(row: Any) -> InactiveMember:
    return InactiveMember(
        str(row["member_id"]), MemberState(row["state"]), row["merged_into"], row["updated_at"]
    )


class MemberStates(_Store):
    """Members who are not active; an active member has no row."""

    async def get(self, member_id: str, *, lock: bool = False) -> InactiveMember | None:
        conn = await self.conn()
        row = await conn.fetchrow(
            "SELECT * FROM member_states WHERE member_id = $1" + (" FOR UPDATE" if lock else ""),
            member_id,
        )
        return None if row is None else _inactive(row)

    async def among(self, member_ids: list[str]) -> dict[str, InactiveMember]:
        """The members of `member_ids` who are not active, in one query."""
        if not member_ids:
            return {}
        conn = await self.conn()
        rows = await conn.fetch(
            "SELECT * FROM member_states WHERE member_id = ANY($1::uuid[])", member_ids
        )
        return {str(r["member_id"]): _inactive(r) for r in rows}

    async def save(self, member: InactiveMember) -> None:
        conn = await self.conn()
        await conn.execute(
            "INSERT INTO member_states (member_id, state, merged_into, updated_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (member_id) DO UPDATE SET "
            "state = EXCLUDED.state, merged_into = EXCLUDED.merged_into, "
            "updated_at = EXCLUDED.updated_at",
            member.member_id,
            member.state.value,
            member.merged_into,
            member.updated_at,
        )

    async def forget(self, member_id: str) -> None:
        conn = await self.conn()
        await conn.execute("DELETE FROM member_states WHERE member_id = $1", member_id)

    async def forward_merged(self, old_survivor: str, new_survivor: str, now: datetime) -> None:
        """Members merged into `old_survivor` now point at `new_survivor` (no chains)."""
        conn = await self.conn()
        await conn.execute(
            "UPDATE member_states SET merged_into = $2, updated_at = $3 "
            "WHERE state = 'merged' AND merged_into = $1",
            old_survivor,
            new_survivor,
            now,
        )


class Birthdays(_Store):
    async def save(self, member_id: str, month: int, day: int) -> None:
        conn = await self.conn()
        if not month or not day:
            await self.forget(member_id)
            return
        await conn.execute(
            "INSERT INTO member_birthdays (member_id, month, day) VALUES ($1, $2, $3) "
            "ON CONFLICT (member_id) DO UPDATE SET month = EXCLUDED.month, day = EXCLUDED.day",
            member_id,
            month,
            day,
        )

    async def forget(self, member_id: str) -> None:
        conn = await self.conn()
        await conn.execute("DELETE FROM member_birthdays WHERE member_id = $1", member_id)

    async def celebrating(
        self, days: list[tuple[int, int]], after: str | None, limit: int
    ) -> list[tuple[str, str | None]]:
        """(member_id, tier or None) of members born on one of `days`, by member id after
        `after`."""
        conn = await self.conn()
        rows = await conn.fetch(
            "SELECT b.member_id, t.tier FROM member_birthdays b "
            "LEFT JOIN member_tiers t ON t.member_id = b.member_id "
            "WHERE (b.month, b.day) IN (SELECT * FROM unnest($1::smallint[], $2::smallint[])) "
            "AND ($3::uuid IS NULL OR b.member_id > $3) ORDER BY b.member_id LIMIT $4",
            [m for m, _ in days],
            [d for _, d in days],
            after,
            limit,
        )
        return [(str(r["member_id"]), r["tier"]) for r in rows]


class Consumptions(_Store):
    async def take_quota(self, member_id: str, benefit: str, period: str, quota: int) -> bool:
        """One use of the quota, if any is left. The upsert locks the usage row, so concurrent
        consumptions queue on it and each sees the count the previous one committed."""
        conn = await self.conn()
        used = await conn.fetchval(
            "INSERT INTO quota_usage AS q (member_id, benefit_code, period_key, used) "
            "VALUES ($1, $2, $3, 1) ON CONFLICT (member_id, benefit_code, period_key) "
            "DO UPDATE SET used = q.used + 1 WHERE q.used < $4 RETURNING used",
            member_id,
            benefit,
            period,
            quota,
        )
        return used is not None

    async def give_back_quota(self, member_id: str, benefit: str, period: str) -> None:
        conn = await self.conn()
        await conn.execute(
            "UPDATE quota_usage SET used = used - 1 "
            "WHERE member_id = $1 AND benefit_code = $2 AND period_key = $3 AND used > 0",
            member_id,
            benefit,
            period,
        )

    async def usage(
        self, member_id: str, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], int]:
        """Uses so far of each (benefit, period)."""
        if not keys:
            return {}
        conn = await self.conn()
        rows = await conn.fetch(
            "SELECT benefit_code, period_key, used FROM quota_usage "
            "WHERE member_id = $1 AND (benefit_code, period_key) IN "
            "(SELECT * FROM unnest($2::text[], $3::text[]))",
            member_id,
            [b for b, _ in keys],
            [p for _, p in keys],
        )
        return {(r["benefit_code"], r["period_key"]): r["used"] for r in rows}

    async def add(self, c: Consumption) -> None:
        conn = await self.conn()
        await conn.execute(
            "INSERT INTO consumptions (member_id, consumption_id, benefit_code, unit, order_id, "
            "period_key, counted, catalogue_version, consumed_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            c.member_id,
            c.consumption_id,
            c.benefit_code,
            c.unit,
            c.order_id,
            c.period_key,
            c.counted,
            c.catalogue_version,
            c.consumed_at,
        )

    async def get(self, member_id: str, consumption_id: str) -> Consumption | None:
        conn = await self.conn()
        row = await conn.fetchrow(
            "SELECT * FROM consumptions WHERE member_id = $1 AND consumption_id = $2 FOR UPDATE",
            member_id,
            consumption_id,
        )
        if row is None:
            return None
        return Consumption(
            consumption_id=str(row["consumption_id"]),
            member_id=str(row["member_id"]),
            benefit_code=row["benefit_code"],
            unit=row["unit"],
            order_id=row["order_id"],
            period_key=row["period_key"],
            counted=row["counted"],
            catalogue_version=row["catalogue_version"],
            consumed_at=row["consumed_at"],
            released_at=row["released_at"],
            release_reason=row["release_reason"],
        )

    async def release(self, c: Consumption) -> None:
        conn = await self.conn()
        await conn.execute(
            "UPDATE consumptions SET released_at = $3, release_reason = $4 "
            "WHERE member_id = $1 AND consumption_id = $2",
            c.member_id,
            c.consumption_id,
            c.released_at,
            c.release_reason,
        )

    async def move_member(self, absorbed: str, survivor: str) -> None:
        """A merge: the absorbed member's consumptions and quota usage become the survivor's
        (uses in the same period add up)."""
        conn = await self.conn()
        await conn.execute(
            "INSERT INTO quota_usage AS q (member_id, benefit_code, period_key, used) "
            "SELECT $2, benefit_code, period_key, used FROM quota_usage WHERE member_id = $1 "
            "ON CONFLICT (member_id, benefit_code, period_key) "
            "DO UPDATE SET used = q.used + EXCLUDED.used",
            absorbed,
            survivor,
        )
        await conn.execute("DELETE FROM quota_usage WHERE member_id = $1", absorbed)
        await conn.execute(
            "UPDATE consumptions SET member_id = $2, "
            "origin_member_id = coalesce(origin_member_id, member_id) WHERE member_id = $1",
            absorbed,
            survivor,
        )

    async def give_back_member(self, survivor: str, restored: str) -> None:
        """An unmerge: the consumptions that came from `restored` are its own again, and so is
        the quota they use (the uses not released, per benefit and period)."""
        conn = await self.conn()
        moved = await conn.fetch(
            "UPDATE consumptions SET member_id = $2, origin_member_id = NULL "
            "WHERE member_id = $1 AND origin_member_id = $2 "
            "RETURNING benefit_code, period_key, counted, released_at",
            survivor,
            restored,
        )
        uses: dict[tuple[str, str], int] = {}
        for row in moved:
            if row["counted"] and row["released_at"] is None:
                key = (row["benefit_code"], row["period_key"])
                uses[key] = uses.get(key, 0) + 1
        for (benefit, period), used in uses.items():
            await conn.execute(
                "UPDATE quota_usage SET used = greatest(used - $4, 0) "
                "WHERE member_id = $1 AND benefit_code = $2 AND period_key = $3",
                survivor,
                benefit,
                period,
                used,
            )
            await conn.execute(
                "INSERT INTO quota_usage AS q (member_id, benefit_code, period_key, used) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (member_id, benefit_code, period_key) "
                "DO UPDATE SET used = q.used + EXCLUDED.used",
                restored,
                benefit,
                period,
                used,
            )

    async def erase_member(self, member_id: str) -> None:
        """Erasure: consumptions stay as anonymous counts; quota usage goes."""
        conn = await self.conn()
        await conn.execute("DELETE FROM quota_usage WHERE member_id = $1", member_id)
        await conn.execute(
            "UPDATE consumptions SET member_id = $2 WHERE member_id = $1",
            member_id,
            ANONYMOUS_MEMBER,
        )


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


class Coupons(_Store):
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


def _redemption(row: Any) -> Redemption:
    return Redemption(
        redemption_id=str(row["redemption_id"]),
        scope=row["scope"],
        request_id=row["request_id"],
        fingerprint=row["fingerprint"],
        member_id=str(row["member_id"]),
        reward_code=row["reward_code"],
        unit=row["unit"],
        points=row["points"],
        state=RedemptionState(row["state"]),
        created_at=row["created_at"],
        posting_id=row["posting_id"],
        coupon_code=row["coupon_code"],
        failure_reason=row["failure_reason"],
        failure_message=row["failure_message"],
    )


class Rewards(_Store):
    async def stock(self, codes: list[str]) -> dict[str, int]:
        conn = await self.conn()
        rows = await conn.fetch(
            "SELECT reward_code, available FROM reward_stock WHERE reward_code = ANY($1)", codes
        )
        return {r["reward_code"]: r["available"] for r in rows}

    async def restock(self, code: str, quantity: int) -> int:
        conn = await self.conn()
        available = await conn.fetchval(
            "INSERT INTO reward_stock AS s (reward_code, available) VALUES ($1, $2) "
            "ON CONFLICT (reward_code) DO UPDATE SET available = s.available + $2 "
            "RETURNING available",
            code,
            quantity,
        )
        return int(available)

    async def take_one(self, code: str) -> bool:
        """One unit of stock, if there is any (never below zero, whatever runs concurrently)."""
        conn = await self.conn()
        taken = await conn.fetchval(
            "UPDATE reward_stock SET available = available - 1 "
            "WHERE reward_code = $1 AND available > 0 RETURNING true",
            code,
        )
        return bool(taken)

    async def give_back_one(self, code: str) -> None:
        conn = await self.conn()
        await conn.execute(
            "UPDATE reward_stock SET available = available + 1 WHERE reward_code = $1", code
        )

    async def add_redemption(self, r: Redemption) -> bool:
        """False when a redemption with this request_id exists (nothing is written)."""
        conn = await self.conn()
        done = await conn.fetchval(
            "INSERT INTO reward_redemptions (redemption_id, scope, request_id, fingerprint, "
            "member_id, reward_code, unit, points, state, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) "
            "ON CONFLICT (scope, request_id) DO NOTHING RETURNING true",
            r.redemption_id,
            r.scope,
            r.request_id,
            r.fingerprint,
            r.member_id,
            r.reward_code,
            r.unit,
            r.points,
            r.state.value,
            r.created_at,
        )
        return bool(done)

    async def redemption_for(self, scope: str, request_id: str) -> Redemption | None:
        conn = await self.conn()
        row = await conn.fetchrow(
            "SELECT * FROM reward_redemptions WHERE scope = $1 AND request_id = $2",
            scope,
            request_id,
        )
        return None if row is None else _redemption(row)

    async def redemption(self, redemption_id: str, *, lock: bool = False) -> Redemption | None:
        conn = await self.conn()
        row = await conn.fetchrow(
            "SELECT * FROM reward_redemptions WHERE redemption_id = $1"
            + (" FOR UPDATE" if lock else ""),
            redemption_id,
        )
        return None if row is None else _redemption(row)

    async def save_redemption(self, r: Redemption, now: datetime) -> None:
        conn = await self.conn()
        await conn.execute(
            "UPDATE reward_redemptions SET state = $2, posting_id = $3, coupon_code = $4, "
            "failure_reason = $5, failure_message = $6, updated_at = $7 WHERE redemption_id = $1",
            r.redemption_id,
            r.state.value,
            r.posting_id,
            r.coupon_code,
            r.failure_reason,
            r.failure_message,
            now,
        )

    async def move_member(self, absorbed: str, survivor: str) -> None:
        conn = await self.conn()
        await conn.execute(
            "UPDATE reward_redemptions SET member_id = $2, "
            "origin_member_id = coalesce(origin_member_id, member_id) WHERE member_id = $1",
            absorbed,
            survivor,
        )

    async def give_back_member(self, survivor: str, restored: str) -> None:
        """An unmerge: the reward redemptions that came from `restored` are its own again."""
        conn = await self.conn()
        await conn.execute(
            "UPDATE reward_redemptions SET member_id = $2, origin_member_id = NULL "
            "WHERE member_id = $1 AND origin_member_id = $2",
            survivor,
            restored,
        )

    async def erase_member(self, member_id: str) -> None:
        conn = await self.conn()
        await conn.execute(
            "UPDATE reward_redemptions SET member_id = $2 WHERE member_id = $1",
            member_id,
            ANONYMOUS_MEMBER,
        )

    async def stale(self, before: datetime, limit: int) -> list[str]:
        """Redemptions left half-way (reserved or charged) since before `before`."""
        conn = await self.conn()
        rows = await conn.fetch(
            "SELECT redemption_id FROM reward_redemptions "
            "WHERE state IN ('reserved', 'charged') AND updated_at < $1 "
            "ORDER BY updated_at LIMIT $2",
            before,
            limit,
        )
        return [str(r["redemption_id"]) for r in rows]


def _issuance(row: Any) -> CouponIssuance:
    return CouponIssuance(
        issuance_id=str(row["issuance_id"]),
        template_code=row["template_code"],
        tag=row["tag"],
        issuer_unit=row["issuer_unit"],
        chunk_size=row["chunk_size"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        state=IssuanceState(row["state"]),
        page_token=row["page_token"],
        chunks=row["chunks"],
        total_members=row["total_members"],
        processed_members=row["processed_members"],
        issued_coupons=row["issued_coupons"],
        done_at=row["done_at"],
        failure_reason=row["failure_reason"],
        failure_message=row["failure_message"],
    )


class CouponIssuances(_Store):
    async def add(self, i: CouponIssuance) -> None:
        conn = await self.conn()
        await conn.execute(
            "INSERT INTO coupon_issuances (issuance_id, template_code, tag, issuer_unit, "
            "chunk_size, state, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            i.issuance_id,
            i.template_code,
            i.tag,
            i.issuer_unit,
            i.chunk_size,
            i.state.value,
            i.created_at,
            i.updated_at,
        )

    async def get(self, issuance_id: str, *, lock: bool = False) -> CouponIssuance | None:
        conn = await self.conn()
        row = await conn.fetchrow(
            "SELECT * FROM coupon_issuances WHERE issuance_id = $1"
            + (" FOR UPDATE" if lock else ""),
            issuance_id,
        )
        return None if row is None else _issuance(row)

    async def save(self, i: CouponIssuance) -> None:
        conn = await self.conn()
        await conn.execute(
            "UPDATE coupon_issuances SET state = $2, page_token = $3, chunks = $4, "
            "total_members = $5, processed_members = $6, issued_coupons = $7, updated_at = $8, "
            "done_at = $9, failure_reason = $10, failure_message = $11 WHERE issuance_id = $1",
            i.issuance_id,
            i.state.value,
            i.page_token,
            i.chunks,
            i.total_members,
            i.processed_members,
            i.issued_coupons,
            i.updated_at,
            i.done_at,
            i.failure_reason,
            i.failure_message,
        )

    async def running(self, limit: int) -> list[str]:
        """Issuances still running, oldest first (a restarted replica carries them on)."""
        conn = await self.conn()
        rows = await conn.fetch(
            "SELECT issuance_id FROM coupon_issuances WHERE state = 'running' "
            "ORDER BY created_at LIMIT $1",
            limit,
        )
        return [str(r["issuance_id"]) for r in rows]
