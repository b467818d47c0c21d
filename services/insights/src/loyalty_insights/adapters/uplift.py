"""A journey's two groups over the window after each member's entry, read from the facts: per
group its members, those who bought, those whose window is still open, and the sums and sums of
squares of spend and points earned per member (what the intervals need)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from loyalty_kit.db import driver_connection
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_insights.domain import crossunit
from loyalty_insights.domain.uplift import Group, Sample

# Per member of the journey: bought in its window (a purchase), its net spend there (purchases
# less refunds, base currency) and the points it earned there.
_GROUPS = """
WITH entered AS (
    SELECT member_id, control, entered_at, entered_at + $2::interval AS window_end
    FROM journey_entries WHERE journey_id = $1
), per_member AS (
    SELECT e.control,
           e.window_end > $3 AS open,
           EXISTS (SELECT 1 FROM activity a
                   WHERE a.member_id = e.member_id AND a.kind = $4
                     AND a.occurred_at >= e.entered_at AND a.occurred_at < e.window_end)
               AS converted,
           coalesce((SELECT sum(a.spend) FROM activity a
                     WHERE a.member_id = e.member_id AND a.kind = ANY($5::text[])
                       AND a.occurred_at >= e.entered_at AND a.occurred_at < e.window_end), 0)
               ::float8 AS spend,
           coalesce((SELECT sum(p.points) FROM ledger_postings p
                     WHERE p.member_id = e.member_id AND p.kind = 'earn'
                       AND p.occurred_at >= e.entered_at AND p.occurred_at < e.window_end), 0)
               ::float8 AS points
    FROM entered e
)
SELECT control,
       count(*) AS members,
       count(*) FILTER (WHERE converted) AS converted,
       count(*) FILTER (WHERE open) AS open,
       sum(spend) AS spend, sum(spend * spend) AS spend_squares,
       sum(points) AS points, sum(points * points) AS points_squares
FROM per_member GROUP BY control
"""

EMPTY = Group(0, 0, 0, Sample(0, 0.0, 0.0), Sample(0, 0.0, 0.0))


class JourneyGroups:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _conn(self) -> Any:
        return await driver_connection(self.session)

    async def groups(self, journey_id: str, window_days: int, now: datetime) -> tuple[Group, Group]:
        """(treatment, control) of the journey over `window_days` after each entry."""
        conn = await self._conn()
        rows = await conn.fetch(
            _GROUPS,
            journey_id,
            timedelta(days=window_days),
            now,
            crossunit.PURCHASE,
            [crossunit.PURCHASE, crossunit.REFUND],
        )
        found = {
            bool(r["control"]): Group(
                int(r["members"]),
                int(r["converted"]),
                int(r["open"]),
                Sample(int(r["members"]), float(r["spend"]), float(r["spend_squares"])),
                Sample(int(r["members"]), float(r["points"]), float(r["points_squares"])),
            )
            for r in rows
        }
        return found.get(False, EMPTY), found.get(True, EMPTY)
