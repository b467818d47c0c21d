"""What the ledger keeps beside postings and lots, in PostgreSQL: the orders that earned
(one earn per unit's order; a chunk of replayed ones claimed at once), partners' transaction
references (one credit each), legacy balances carried over (one per legacy account), referrals
and the tier changes learnt from the tiers service."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from loyalty_kit.db import driver_connection
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_points.adapters import tables as t
from loyalty_points.domain.migration import Carry
from loyalty_points.domain.orders import OrderRecord
from loyalty_points.domain.programme import Holding

_CLAIM_LEGACY_BALANCES = """
INSERT INTO legacy_balances (unit, legacy_key, member_id, member_import, legacy_points, points,
                             outcome, posting_id, expires_at, carried_at)
SELECT $1::text, c.legacy_key, c.member_id, $2::text, c.legacy_points, c.points, c.outcome,
       c.posting_id, c.expires_at, $3::timestamptz
FROM unnest($4::text[], $5::uuid[], $6::bigint[], $7::bigint[], $8::text[], $9::uuid[],
            $10::timestamptz[])
     AS c(legacy_key, member_id, legacy_points, points, outcome, posting_id, expires_at)
ORDER BY c.legacy_key
ON CONFLICT (unit, legacy_key) DO UPDATE
SET member_id = EXCLUDED.member_id, member_import = EXCLUDED.member_import,
    legacy_points = EXCLUDED.legacy_points, points = EXCLUDED.points,
    outcome = EXCLUDED.outcome, posting_id = EXCLUDED.posting_id,
    expires_at = EXCLUDED.expires_at, carried_at = EXCLUDED.carried_at
WHERE legacy_balances.posting_id IS NULL
RETURNING legacy_key
"""

# A chunk's orders claimed in order-ID order: two chunks (or an earn) sharing an order wait for
# each other, never deadlock.
_CLAIM_ORDERS = """
INSERT INTO orders (unit, order_id, member_id, posting_id, lot_id, currency, lines, bonus_points,
                    bonus_reversed)
SELECT o.unit, o.order_id, o.member_id, o.posting_id, o.lot_id, o.currency, o.lines::jsonb,
       o.bonus_points, false
FROM unnest($1::text[], $2::text[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[], $7::text[],
            $8::bigint[])
     AS o(unit, order_id, member_id, posting_id, lot_id, currency, lines, bonus_points)
ORDER BY o.unit, o.order_id
ON CONFLICT (unit, order_id) DO NOTHING
RETURNING unit, order_id
"""


class RecordRows:
    session: AsyncSession

    # --- orders -------------------------------------------------------------------------------
    async def order(self, unit: str, order_id: str) -> OrderRecord | None:
        row = (
            await self.session.execute(
                select(t.orders).where(t.orders.c.unit == unit, t.orders.c.order_id == order_id)
            )
        ).first()
        if row is None:
            return None
        return OrderRecord(
            unit=row.unit,
            order_id=row.order_id,
            member_id=str(row.member_id),
            posting_id=str(row.posting_id),
            lot_id=str(row.lot_id),
            currency=row.currency,
            lines=dict(row.lines),
            bonus_points=row.bonus_points,
            bonus_reversed=row.bonus_reversed,
        )

    async def claim_order(self, order: OrderRecord) -> bool:
        """Record the order; False if the unit's order id has earned already (one statement
        both checks and claims, and a concurrent duplicate waits for the first to finish)."""
        conn = await driver_connection(self.session)
        claimed = await conn.fetchval(
            "INSERT INTO orders (unit, order_id, member_id, posting_id, lot_id, currency, lines, "
            "bonus_points, bonus_reversed) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9) "
            "ON CONFLICT DO NOTHING RETURNING true",
            order.unit,
            order.order_id,
            order.member_id,
            order.posting_id,
            order.lot_id,
            order.currency,
            json.dumps(order.lines),
            order.bonus_points,
            order.bonus_reversed,
        )
        return bool(claimed)

    async def claim_orders(self, orders: Sequence[OrderRecord]) -> set[tuple[str, str]]:
        """Record many orders (a chunk of replayed ones) in one statement; answers the (unit,
        order id) of those claimed now: one that earned before is left as it is."""
        if not orders:
            return set()
        conn = await driver_connection(self.session)
        rows = await conn.fetch(
            _CLAIM_ORDERS,
            [o.unit for o in orders],
            [o.order_id for o in orders],
            [o.member_id for o in orders],
            [o.posting_id for o in orders],
            [o.lot_id for o in orders],
            [o.currency for o in orders],
            [json.dumps(o.lines) for o in orders],
            [o.bonus_points for o in orders],
        )
        return {(r["unit"], r["order_id"]) for r in rows}

    async def record_tier_change(self, member_id: str, effective_at: datetime, tier: str) -> None:
        conn = await driver_connection(self.session)
        await conn.execute(
            "INSERT INTO tier_changes (member_id, effective_at, tier) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING",
            member_id,
            effective_at,
            tier,
        )

    async def tier_at(self, member_id: str, at: datetime) -> str:
        """The tier the member held at `at` ('' before any change known here: the entry tier)."""
        conn = await driver_connection(self.session)
        found = await conn.fetchval(
            "SELECT tier FROM tier_changes WHERE member_id = $1 AND effective_at <= $2 "
            "ORDER BY effective_at DESC LIMIT 1",
            member_id,
            at,
        )
        return str(found or "")

    async def tier_changes(
        self, member_ids: Sequence[str]
    ) -> dict[str, list[tuple[datetime, str]]]:
        """The members' tier changes known here, each member's in time order (one statement
        for a chunk: `tier_at` for many members and times)."""
        if not member_ids:
            return {}
        conn = await driver_connection(self.session)
        rows = await conn.fetch(
            "SELECT member_id, effective_at, tier FROM tier_changes "
            "WHERE member_id = ANY($1::uuid[]) ORDER BY member_id, effective_at",
            list(member_ids),
        )
        found: dict[str, list[tuple[datetime, str]]] = {}
        for row in rows:
            found.setdefault(str(row["member_id"]), []).append((row["effective_at"], row["tier"]))
        return found

    async def record_badge_earned(self, member_id: str, badge: str, at: datetime) -> None:
        """The member holds `badge` from `at` (a redelivery changes nothing)."""
        conn = await driver_connection(self.session)
        await conn.execute(
            "INSERT INTO badge_holdings (member_id, badge, held_from) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING",
            member_id,
            badge,
            at,
        )

    async def record_badge_revoked(self, member_id: str, badge: str, at: datetime) -> None:
        """The member's holding of `badge` begun by `at` ends at `at`."""
        conn = await driver_connection(self.session)
        await conn.execute(
            "UPDATE badge_holdings SET held_until = $3 WHERE member_id = $1 AND badge = $2 "
            "AND held_from <= $3 AND (held_until IS NULL OR held_until > $3)",
            member_id,
            badge,
            at,
        )

    async def copy_badges(self, from_member: str, to_member: str) -> None:
        """A merge: the survivor holds what the absorbed member held, when it held it."""
        conn = await driver_connection(self.session)
        await conn.execute(
            "INSERT INTO badge_holdings (member_id, badge, held_from, held_until) "
            "SELECT $2, badge, held_from, held_until FROM badge_holdings WHERE member_id = $1 "
            "ON CONFLICT DO NOTHING",
            from_member,
            to_member,
        )

    async def badges_at(self, member_id: str, at: datetime) -> frozenset[str]:
        """The badges the member held at `at`."""
        conn = await driver_connection(self.session)
        rows = await conn.fetch(
            "SELECT DISTINCT badge FROM badge_holdings WHERE member_id = $1 AND held_from <= $2 "
            "AND (held_until IS NULL OR held_until > $2)",
            member_id,
            at,
        )
        return frozenset(r["badge"] for r in rows)

    async def badge_holdings(self, member_ids: Sequence[str]) -> dict[str, list[Holding]]:
        """The members' badge holdings known here (one statement for a chunk: `badges_at`
        for many members and times)."""
        if not member_ids:
            return {}
        conn = await driver_connection(self.session)
        rows = await conn.fetch(
            "SELECT member_id, badge, held_from, held_until FROM badge_holdings "
            "WHERE member_id = ANY($1::uuid[]) ORDER BY member_id, held_from",
            list(member_ids),
        )
        found: dict[str, list[Holding]] = {}
        for row in rows:
            found.setdefault(str(row["member_id"]), []).append(
                Holding(row["badge"], row["held_from"], row["held_until"])
            )
        return found

    async def claim_legacy_balances(
        self, unit: str, member_import: str, carries: Sequence[Carry], now: datetime
    ) -> set[str]:
        """Record what becomes of each legacy account's balance; answers the legacy keys
        recorded now. A key whose balance was credited before, by any chunk or import, is
        left as it is and not answered; one that credited nothing then (expired, below the
        rate) is recorded again, so a corrected file carries it over, still once. One
        statement for the chunk, in key order, so two chunks naming one account never
        deadlock: the second waits for the first, then finds the account credited."""
        conn = await driver_connection(self.session)
        rows = await conn.fetch(
            _CLAIM_LEGACY_BALANCES,
            unit,
            member_import,
            now,
            [c.balance.legacy_key for c in carries],
            [c.holder for c in carries],
            [c.balance.legacy_points for c in carries],
            [c.points for c in carries],
            [c.outcome.value for c in carries],
            [c.posting_id for c in carries],
            [c.expires_at for c in carries],
        )
        return {r["legacy_key"] for r in rows}

    async def claim_partner_reference(
        self, partner: str, reference: str, member_id: str, posting_id: str
    ) -> str | None:
        """Record a partner's transaction reference; None when it is new, else the posting it
        already credited (one statement checks and claims; a concurrent duplicate waits)."""
        conn = await driver_connection(self.session)
        claimed = await conn.fetchval(
            "INSERT INTO partner_references (partner, reference, member_id, posting_id) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
            partner,
            reference,
            member_id,
            posting_id,
        )
        if claimed:
            return None
        earlier = await conn.fetchval(
            "SELECT posting_id FROM partner_references WHERE partner = $1 AND reference = $2",
            partner,
            reference,
        )
        return str(earlier)

    async def save_order(self, order: OrderRecord) -> None:
        await self.session.execute(
            update(t.orders)
            .where(t.orders.c.unit == order.unit, t.orders.c.order_id == order.order_id)
            .values(lines=order.lines, bonus_reversed=order.bonus_reversed)
        )

    # --- referrals ----------------------------------------------------------------------------
    async def referral(self, member_id: str) -> tuple[str, datetime | None] | None:
        row = (
            await self.session.execute(
                select(t.referrals).where(t.referrals.c.member_id == member_id)
            )
        ).first()
        return (str(row.referrer_id), row.rewarded_at) if row else None

    async def add_referral(self, member_id: str, referrer_id: str, now: datetime) -> None:
        await self.session.execute(
            insert(t.referrals).values(
                member_id=member_id, referrer_id=referrer_id, recorded_at=now
            )
        )

    async def mark_referral_rewarded(self, member_id: str, now: datetime) -> None:
        await self.session.execute(
            update(t.referrals).where(t.referrals.c.member_id == member_id).values(rewarded_at=now)
        )
