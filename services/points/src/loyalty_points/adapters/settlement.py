"""The settlement's sums over the ledger, in PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_points.adapters import tables as t
from loyalty_points.domain.ledger import REDEEMING, PostingKind

# A lot movement with the posting it belongs to.
_OF_POSTING = and_(
    t.postings.c.member_id == t.lot_movements.c.member_id,
    t.postings.c.posting_id == t.lot_movements.c.posting_id,
)


class SettlementRows:
    session: AsyncSession

    # --- settlement ---------------------------------------------------------------------------
    async def settlement(self, start: datetime, end: datetime) -> dict[str, Any]:
        in_period = and_(t.postings.c.posted_at >= start, t.postings.c.posted_at < end)
        by_unit_kind = await self.session.execute(
            select(t.postings.c.unit, t.postings.c.kind, func.sum(t.postings.c.points))
            .where(in_period)
            .group_by(t.postings.c.unit, t.postings.c.kind, func.sign(t.postings.c.points))
        )
        moved = and_(t.lot_movements.c.posted_at >= start, t.lot_movements.c.posted_at < end)
        flows = await self.session.execute(
            select(
                t.lot_movements.c.earned_unit,
                t.lot_movements.c.unit,
                func.sum(t.lot_movements.c.points),
            )
            .join(t.postings, _OF_POSTING)
            .where(
                moved,
                t.postings.c.kind.in_([k.value for k in REDEEMING])
                | (
                    (t.postings.c.kind == PostingKind.PARTNER_EXCHANGE_REVERSE.value)
                    & (t.postings.c.points > 0)
                ),
            )
            .group_by(t.lot_movements.c.earned_unit, t.lot_movements.c.unit)
        )
        # Points that left the books by lot (expiry, erasure), under the unit that issued them.
        lapsed = await self.session.execute(
            select(
                t.lot_movements.c.earned_unit,
                t.postings.c.kind,
                func.sum(t.lot_movements.c.points),
            )
            .join(t.postings, _OF_POSTING)
            .where(
                moved,
                t.postings.c.kind.in_(
                    [PostingKind.EXPIRE.value, PostingKind.ERASURE_FORFEIT.value]
                ),
            )
            .group_by(t.lot_movements.c.earned_unit, t.postings.c.kind)
        )
        by_kind: dict[str, dict[str, int]] = {"expire": {}, "erasure_forfeit": {}}
        for unit, kind, points in lapsed:
            by_kind[kind][unit] = -int(points)
        total = await self.session.scalar(
            select(func.coalesce(func.sum(t.postings.c.points), 0)).where(in_period)
        )
        return {
            "by_unit_kind": [(u, PostingKind(k), int(p)) for u, k, p in by_unit_kind],
            "flows": [(e, r, -int(p)) for e, r, p in flows],
            "expired": by_kind[PostingKind.EXPIRE.value],
            "forfeited": by_kind[PostingKind.ERASURE_FORFEIT.value],
            "total": int(total or 0),
        }
