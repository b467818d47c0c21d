"""Tiers in PostgreSQL (SQL on the asyncpg connection of the unit of work's transaction)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from loyalty_kit.db import driver_connection
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_tiers.domain.ladder import Activity, Ladder, Metric, ladder_from_json, ladder_to_json


@dataclass
class MemberTier:
    member_id: str
    tier: str
    since: datetime
    tier_year_end: datetime | None


class TierStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def ladder(self) -> Ladder | None:
        conn = await driver_connection(self.session)
        row = await conn.fetchrow(
            "SELECT version, rules FROM ladder_versions ORDER BY version DESC LIMIT 1"
        )
        if row is None:
            return None
        rules = row["rules"]  # the engine's jsonb codec may have decoded it already
        return ladder_from_json(
            row["version"], json.loads(rules) if isinstance(rules, str) else rules
        )

    async def add_ladder(self, ladder: Ladder) -> int:
        conn = await driver_connection(self.session)
        await conn.execute("LOCK TABLE ladder_versions IN EXCLUSIVE MODE")
        version = int(
            await conn.fetchval("SELECT coalesce(max(version), 0) + 1 FROM ladder_versions")
        )
        await conn.execute(
            "INSERT INTO ladder_versions (version, rules) VALUES ($1, $2::jsonb)",
            version,
            json.dumps(ladder_to_json(ladder)),
        )
        return version

    async def record_activity(
        self,
        member_id: str,
        event_id: str,
        occurred_at: datetime,
        spend: Decimal,
        points: int,
        visits: int,
    ) -> bool:
        """False when the event was counted already."""
        conn = await driver_connection(self.session)
        done = await conn.fetchval(
            "INSERT INTO activity (member_id, event_id, occurred_at, spend, points, visits) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true",
            member_id,
            event_id,
            occurred_at,
            spend,
            points,
            visits,
        )
        return bool(done)

    async def activity(self, member_id: str, since: datetime, until: datetime) -> Activity:
        conn = await driver_connection(self.session)
        row = await conn.fetchrow(
            "SELECT coalesce(sum(spend), 0) AS spend, coalesce(sum(points), 0) AS points, "
            "coalesce(sum(visits), 0) AS visits FROM activity "
            "WHERE member_id = $1 AND occurred_at >= $2 AND occurred_at <= $3",
            member_id,
            since,
            until,
        )
        assert row is not None  # an aggregate always returns a row
        return {
            Metric.QUALIFYING_SPEND: Decimal(row["spend"]),
            Metric.POINTS_EARNED: Decimal(row["points"]),
            Metric.VISITS: Decimal(row["visits"]),
        }

    async def member_tier(self, member_id: str, *, lock: bool = False) -> MemberTier | None:
        conn = await driver_connection(self.session)
        row = await conn.fetchrow(
            "SELECT member_id, tier, since, tier_year_end FROM member_tiers WHERE member_id = $1"
            + (" FOR UPDATE" if lock else ""),
            member_id,
        )
        if row is None:
            return None
        return MemberTier(str(row["member_id"]), row["tier"], row["since"], row["tier_year_end"])

    async def save_member_tier(self, member: MemberTier) -> None:
        conn = await driver_connection(self.session)
        await conn.execute(
            "INSERT INTO member_tiers (member_id, tier, since, tier_year_end) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (member_id) DO UPDATE "
            "SET tier = EXCLUDED.tier, since = EXCLUDED.since, "
            "tier_year_end = EXCLUDED.tier_year_end",
            member.member_id,
            member.tier,
            member.since,
            member.tier_year_end,
        )

    async def move_member(self, absorbed: str, survivor: str) -> None:
        """A merge: the absorbed member's activity and history become the survivor's."""
        conn = await driver_connection(self.session)
        await conn.execute(
            "UPDATE activity SET member_id = $2 WHERE member_id = $1", absorbed, survivor
        )
        await conn.execute("DELETE FROM member_tiers WHERE member_id = $1", absorbed)

    async def members_due(self, as_of: datetime, limit: int) -> list[str]:
        """Members whose tier year has ended by `as_of`, soonest first."""
        conn = await driver_connection(self.session)
        rows = await conn.fetch(
            "SELECT member_id FROM member_tiers WHERE tier_year_end <= $1 "
            "ORDER BY tier_year_end LIMIT $2",
            as_of,
            limit,
        )
        return [str(r["member_id"]) for r in rows]

    async def add_history(
        self, member_id: str, from_tier: str, to_tier: str, reason: str, at: datetime
    ) -> None:
        conn = await driver_connection(self.session)
        await conn.execute(
            "INSERT INTO tier_history (member_id, from_tier, to_tier, reason, changed_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            member_id,
            from_tier,
            to_tier,
            reason,
            at,
        )

    async def history(
        self, member_id: str, before_seq: int | None, limit: int
    ) -> list[tuple[int, str, str, str, datetime]]:
        conn = await driver_connection(self.session)
        rows = await conn.fetch(
            "SELECT seq, from_tier, to_tier, reason, changed_at FROM tier_history "
            "WHERE member_id = $1 AND ($2::bigint IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3",
            member_id,
            before_seq,
            limit,
        )
        return [
            (r["seq"], r["from_tier"], r["to_tier"], r["reason"], r["changed_at"]) for r in rows
        ]
