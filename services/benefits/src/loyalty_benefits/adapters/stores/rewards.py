"""Rewards' stock and the reward redemptions (the saga's progress), with their member's merges
and erasure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from loyalty_benefits.adapters.stores.base import ANONYMOUS_MEMBER, Store
from loyalty_benefits.domain.rewards import Redemption, RedemptionState


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


class Rewards(Store):
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
