"""Benefit consumptions and the quota they count against."""

from __future__ import annotations

from loyalty_benefits.adapters.stores.base import ANONYMOUS_MEMBER, Store
from loyalty_benefits.domain.entitlements import Consumption


class Consumptions(Store):
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
