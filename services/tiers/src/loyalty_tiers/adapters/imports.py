"""What the tiers service keeps of imports, in PostgreSQL: each legacy account's tier claimed
once (`legacy_tiers`); a chunk of past orders claimed once per (unit, order ID) and recorded as
activity (`activity_orders`, `activity`: `COPY`, the fastest way in) and the members it may
upgrade marked for the upgrade job (`upgrades_due`); and the members of a chunk looked up
together (merged, erased) rather than one round trip each."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

import asyncpg

from loyalty_tiers.domain.legacy import Match
from loyalty_tiers.domain.orders import (
    IMPORTED_ORDER,
    ORDER_POINTS,
    ORDER_VISITS,
    OrderActivity,
    imported_event_id,
)

_CLAIM = """
INSERT INTO legacy_tiers (unit, legacy_key, member_id, member_import, tier, outcome, grant_id,
                          ends_at, recorded_at)
SELECT $1::text, c.legacy_key, c.member_id, $2::text, c.tier, c.outcome, c.grant_id, c.ends_at,
       $3::timestamptz
FROM unnest($4::text[], $5::uuid[], $6::text[], $7::text[], $8::uuid[], $9::timestamptz[])
     AS c(legacy_key, member_id, tier, outcome, grant_id, ends_at)
ORDER BY c.legacy_key
ON CONFLICT (unit, legacy_key) DO UPDATE
SET member_id = EXCLUDED.member_id, member_import = EXCLUDED.member_import,
    tier = EXCLUDED.tier, outcome = EXCLUDED.outcome, grant_id = EXCLUDED.grant_id,
    ends_at = EXCLUDED.ends_at, recorded_at = EXCLUDED.recorded_at
WHERE legacy_tiers.grant_id IS NULL
RETURNING legacy_key
"""

_ORDER_ID = itemgetter(1)  # an OrderActivity's order_id, for sorting a chunk (in C)
ORDER_COLUMNS = ("unit", "order_id", "event_id", "order_import")
ACTIVITY_COLUMNS = (
    "member_id",
    "event_id",
    "occurred_at",
    "unit",
    "spend",
    "points",
    "visits",
    "origin_member_id",
)

# When some of a chunk's orders were counted before (an import again, an order that earned
# live) or are being claimed by another transaction: the same in one statement that skips them
# (and waits for the other). Orders claimed in order-ID order (two chunks sharing orders never
# deadlock), then the claimed ones recorded as activity.
RECORD_ORDERS = f"""
WITH o AS (
    SELECT * FROM unnest($3::uuid[], $4::text[], $5::timestamptz[], $6::numeric[], $7::uuid[])
         AS o(member_id, order_id, occurred_at, spend, origin)
), claimed AS (
    INSERT INTO activity_orders (unit, order_id, event_id, order_import)
    SELECT $1::text, o.order_id, '{IMPORTED_ORDER}' || $1::text || '/' || o.order_id, $2::text
    FROM o ORDER BY o.order_id
    ON CONFLICT (unit, order_id) DO NOTHING
    RETURNING order_id, event_id
)
INSERT INTO activity (member_id, event_id, occurred_at, unit, spend, points, visits,
                      origin_member_id)
SELECT o.member_id, c.event_id, o.occurred_at, $1::text, o.spend, {ORDER_POINTS}, {ORDER_VISITS},
       o.origin
FROM o JOIN claimed c ON c.order_id = o.order_id
ON CONFLICT DO NOTHING
RETURNING event_id
"""

# A chunk adds its own marks, never touching another's: chunks of an import never wait for each
# other or for the upgrade job. The job takes the members whose latest mark is old enough, and
# deletes the marks it saw: a mark committed later (with its orders) stays for the next round.
_MARK = """
INSERT INTO upgrades_due (member_id, marked_at)
SELECT m, $2::timestamptz FROM unnest($1::uuid[]) AS m
"""
_TAKE = """
WITH due AS (
    SELECT member_id FROM upgrades_due GROUP BY member_id HAVING max(marked_at) <= $2
    ORDER BY member_id LIMIT $1
)
DELETE FROM upgrades_due u USING due
WHERE u.member_id = due.member_id AND u.marked_at <= $2
RETURNING u.member_id
"""


class ImportRows:
    async def _conn(self) -> Any: ...

    async def claim_legacy_tiers(
        self, unit: str, member_import: str, matches: Sequence[Match], now: datetime
    ) -> set[str]:
        """Record what becomes of each legacy account's tier; answers the legacy keys recorded
        now. A key granted before, by any chunk or import, is left as it is and not answered;
        one that granted nothing then is recorded again (a corrected tier mapping grants it,
        still once). One statement, in key order: two chunks naming one account never
        deadlock, the second waits for the first and finds it granted."""
        conn = await self._conn()
        rows = await conn.fetch(
            _CLAIM,
            unit,
            member_import,
            now,
            [m.entry.legacy_key for m in matches],
            [m.holder for m in matches],
            [m.entry.tier for m in matches],
            [m.outcome.value for m in matches],
            [m.grant_id for m in matches],
            [m.ends_at for m in matches],
        )
        return {r["legacy_key"] for r in rows}

    async def record_orders(
        self, unit: str, order_import: str, orders: Sequence[OrderActivity]
    ) -> list[OrderActivity]:
        """Record the orders no activity counted before (by unit and order ID, whichever import
        or earn brought them); answers those recorded now. The order IDs must be distinct.
        The orders are COPYed, the fastest way in, as a chunk's usually are all new; should
        any have been counted before (or be claimed by another transaction meanwhile), the
        COPY is undone (a savepoint) and one INSERT ... ON CONFLICT records the others."""
        if not orders:
            return []
        conn = await self._conn()
        # In order-ID order, as the statement below claims them: two chunks sharing orders (two
        # imports of one file) wait for each other, never deadlock.
        orders = sorted(orders, key=_ORDER_ID)
        events = [imported_event_id(unit, o.order_id) for o in orders]
        # The COPYs' records as plain tuples, made in one pass each (asyncpg encodes them in C).
        claims = [(unit, o.order_id, e, order_import) for o, e in zip(orders, events, strict=True)]
        activity = [
            (o.member_id, e, o.occurred_at, unit, o.spend, ORDER_POINTS, ORDER_VISITS, o.origin)
            for o, e in zip(orders, events, strict=True)
        ]
        try:
            async with conn.transaction():  # a savepoint
                await conn.copy_records_to_table(
                    "activity_orders", columns=ORDER_COLUMNS, records=claims
                )
                await conn.copy_records_to_table(
                    "activity", columns=ACTIVITY_COLUMNS, records=activity
                )
            return list(orders)
        except asyncpg.UniqueViolationError:
            pass
        rows = await conn.fetch(
            RECORD_ORDERS,
            unit,
            order_import,
            [o.member_id for o in orders],
            [o.order_id for o in orders],
            [o.occurred_at for o in orders],
            [o.spend for o in orders],
            [o.origin for o in orders],
        )
        recorded = {r["event_id"] for r in rows}
        return [o for o, e in zip(orders, events, strict=True) if e in recorded]

    async def mark_to_judge(self, member_ids: Sequence[str], now: datetime) -> None:
        """Mark members for the upgrade job."""
        if member_ids:
            conn = await self._conn()
            await conn.execute(_MARK, sorted(set(member_ids)), now)

    async def take_to_judge(self, limit: int, marked_before: datetime) -> list[str]:
        """Up to `limit` members last marked by `marked_before`, unmarked (in this transaction:
        undone with it), in member order. Two replicas taking at once: the second waits for
        the first and takes what the first left."""
        conn = await self._conn()
        rows = await conn.fetch(_TAKE, limit, marked_before)
        return sorted({str(r["member_id"]) for r in rows})

    async def survivors_of(self, member_ids: Sequence[str]) -> dict[str, str]:
        """The members of `member_ids` merged into another, with the survivor each is now."""
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT member_id, merged_into FROM merged_members WHERE member_id = ANY($1::uuid[])",
            list(member_ids),
        )
        return {str(r["member_id"]): str(r["merged_into"]) for r in rows}

    async def erased_among(self, member_ids: Sequence[str]) -> set[str]:
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT member_id FROM erased_members WHERE member_id = ANY($1::uuid[])",
            list(member_ids),
        )
        return {str(r["member_id"]) for r in rows}
