"""Members' referral codes, and the referrals a member made with what each paid them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_points.adapters import tables as t


@dataclass(frozen=True)
class ReferralMade:
    """One member a referrer referred, with the referrer's bonus for it (0 until paid)."""

    member_id: str
    recorded_at: datetime
    rewarded_at: datetime | None
    points: int


class ReferralCodes:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def code_of(self, member_id: str) -> tuple[str, datetime] | None:
        row = (
            await self.session.execute(
                select(t.referral_codes).where(t.referral_codes.c.member_id == member_id)
            )
        ).first()
        return (row.code, row.created_at) if row else None

    async def absorbed_code_of(self, survivor_id: str) -> tuple[str, datetime] | None:
        """The oldest code of a member merged into the survivor (along a chain of merges)."""
        row = (
            await self.session.execute(
                text(
                    "WITH RECURSIVE absorbed(member_id, depth) AS ("
                    "SELECT member_id, 1 FROM accounts "
                    "WHERE merged_into = :survivor AND state = 'merged' "
                    "UNION SELECT a.member_id, b.depth + 1 FROM accounts a "
                    "JOIN absorbed b ON a.merged_into = b.member_id "
                    "WHERE a.state = 'merged' AND b.depth < 16) "
                    "SELECT c.code, c.created_at FROM referral_codes c "
                    "JOIN absorbed b ON b.member_id = c.member_id "
                    "ORDER BY c.created_at, c.code LIMIT 1"
                ),
                {"survivor": survivor_id},
            )
        ).first()
        return (row.code, row.created_at) if row else None

    async def add(self, member_id: str, code: str, now: datetime) -> bool:
        """False when the member has a code already or the code is another member's (nothing
        written): the unique member and the unique code decide a race."""
        done = await self.session.execute(
            insert(t.referral_codes)
            .values(member_id=member_id, code=code, created_at=now)
            .on_conflict_do_nothing()
            .returning(t.referral_codes.c.member_id)
        )
        return done.first() is not None

    async def member_of(self, code: str) -> str | None:
        row = (
            await self.session.execute(
                select(t.referral_codes.c.member_id).where(t.referral_codes.c.code == code)
            )
        ).first()
        return str(row.member_id) if row else None

    async def referrals_by(
        self, referrer_id: str, before: tuple[datetime, str] | None, limit: int
    ) -> list[ReferralMade]:
        """The referrer's referrals newest first (by when recorded, then the member), those
        before `before`; the points are the referrer's bonus posting for each (its reason names
        the referral)."""
        rows = await self.session.execute(
            text(
                "SELECT r.member_id, r.recorded_at, r.rewarded_at, coalesce(sum(p.points), 0) "
                "AS points FROM referrals r LEFT JOIN postings p ON p.member_id = r.referrer_id "
                "AND p.kind = 'referral_bonus' "
                "AND p.reason = 'referral of ' || r.member_id || ' by ' || r.referrer_id "
                "WHERE r.referrer_id = :referrer AND (CAST(:before_at AS timestamptz) IS NULL "
                "OR (r.recorded_at, r.member_id) < (:before_at, CAST(:before_id AS uuid))) "
                "GROUP BY r.member_id, r.recorded_at, r.rewarded_at "
                "ORDER BY r.recorded_at DESC, r.member_id DESC LIMIT :limit"
            ),
            {
                "referrer": referrer_id,
                "before_at": before[0] if before else None,
                "before_id": before[1] if before else None,
                "limit": limit,
            },
        )
        return [
            ReferralMade(str(r.member_id), r.recorded_at, r.rewarded_at, int(r.points))
            for r in rows
        ]
