"""What the benefits service knows of members: their tiers (from TierChanged) and the ones
not active (suspended, merged, erased: from identity's events)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from loyalty_benefits.adapters.stores.base import Store
from loyalty_benefits.domain.entitlements import MemberTier
from loyalty_benefits.domain.members import InactiveMember, MemberState


class MemberTiers(Store):
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

    async def standing(self, member_id: str) -> tuple[MemberTier | None, InactiveMember | None]:
        """The member's tier and, when not active, their state, in one read."""
        conn = await self.conn()
        row = await conn.fetchrow(
            "SELECT t.tier, t.effective_at, t.tier_year_end, s.member_id AS inactive, s.state,"
            " s.merged_into, s.updated_at FROM (SELECT $1::uuid AS member_id) AS m"
            " LEFT JOIN member_tiers t ON t.member_id = m.member_id"
            " LEFT JOIN member_states s ON s.member_id = m.member_id",
            member_id,
        )
        assert row is not None  # the outer joins answer one row
        tier = (
            MemberTier(member_id, row["tier"], row["effective_at"], row["tier_year_end"])
            if row["tier"] is not None
            else None
        )
        state = (
            InactiveMember(
                member_id, MemberState(row["state"]), row["merged_into"], row["updated_at"]
            )
            if row["inactive"] is not None
            else None
        )
        return tier, state

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


class MemberStates(Store):
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
