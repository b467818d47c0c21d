"""The figures' queries over the facts. Plain SQL that also runs on PostgreSQL distributed by
member (Citus): every fact table is read whole for the period and grouped, and members' facts
are joined to the small `member_merges` table to count an absorbed member for its survivor."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from loyalty_kit.db import driver_connection
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_insights.domain.cohorts import REDEEMING, MonthActivity, TierBenefits
from loyalty_insights.domain.crossunit import ACTIVE, CONSUMPTION, REFUND, SPENDING, MonthOfMembers
from loyalty_insights.domain.liability import LAPSING
from loyalty_insights.domain.rfm import SEGMENT_CELLS, RfmScore, ScoreGroup

# Each member whose facts count for another (an absorbed member, along its chain of merges)
# with the member they count for now.
_OWNERS = """
WITH RECURSIVE chain (member_id, owner) AS (
    SELECT absorbed_id, survivor_id FROM member_merges
    UNION
    SELECT c.member_id, m.survivor_id
    FROM chain c JOIN member_merges m ON m.absorbed_id = c.owner
), owners AS (
    SELECT c.member_id, c.owner FROM chain c
    WHERE NOT EXISTS (SELECT 1 FROM member_merges m WHERE m.absorbed_id = c.owner)
)"""
OWNERS = _OWNERS  # for the other adapters' statements


def family(members: str) -> str:
    """The members named (the text[] parameter `members`, e.g. "$1") up to their survivors
    (`targets`), then each target's whole family (`fam`: every member counting for it, with
    it as `owner`): the head of a statement over the members an event touched."""
    return f"""
WITH RECURSIVE up (member_id, owner) AS (
    SELECT m, m FROM unnest({members}::text[]) AS m
    UNION
    SELECT u.member_id, g.survivor_id FROM up u JOIN member_merges g ON g.absorbed_id = u.owner
), targets AS (
    SELECT DISTINCT u.owner AS member_id FROM up u
    WHERE NOT EXISTS (SELECT 1 FROM member_merges g WHERE g.absorbed_id = u.owner)
), fam (member_id, owner) AS (
    SELECT member_id, member_id FROM targets
    UNION
    SELECT g.absorbed_id, f.owner FROM fam f JOIN member_merges g ON g.survivor_id = f.member_id
)"""


# Activity of the kinds given ($3), from $1 (inclusive) to $2 (exclusive), by the member it
# counts for.
_ACTS = (
    _OWNERS
    + """, acts AS (
    SELECT coalesce(o.owner, a.member_id) AS member_id, a.unit, a.kind, a.occurred_at,
           a.spend, a.currency
    FROM activity a LEFT JOIN owners o ON o.member_id = a.member_id
    WHERE a.occurred_at >= $1 AND a.occurred_at < $2 AND a.kind = ANY($3::text[])
)"""
)

_MONTHS = (
    _ACTS
    + """, monthly AS (
    SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, member_id,
           count(DISTINCT unit) AS units, bool_or(unit = $4) AS there
    FROM acts GROUP BY 1, 2
)
SELECT month,
       count(*) FILTER (WHERE $4 = '' OR there) AS active,
       count(*) FILTER (WHERE units >= 2 AND ($4 = '' OR there)) AS multi
FROM monthly GROUP BY month ORDER BY month
"""
)

_WHOLE_PERIOD = (
    _ACTS
    + """, members AS (
    SELECT member_id, count(DISTINCT unit) AS units, bool_or(unit = $4) AS there
    FROM acts GROUP BY member_id
)
SELECT count(*) FILTER (WHERE $4 = '' OR there) AS active,
       count(*) FILTER (WHERE units >= 2 AND ($4 = '' OR there)) AS multi
FROM members
"""
)

_OVERLAP = (
    _ACTS
    + """, visited AS (SELECT DISTINCT member_id, unit FROM acts)
SELECT a.unit, b.unit AS other_unit, count(*) AS members
FROM visited a JOIN visited b ON a.member_id = b.member_id
WHERE $4 = '' OR a.unit = $4 OR b.unit = $4
GROUP BY 1, 2 ORDER BY 1, 2
"""
)

# Members whose first activity anywhere is in the period ($5 .. $2): where it was, and the
# next other unit they were active at before the period's end. $1 is the beginning of time.
_FLOWS = (
    _ACTS
    + """, firsts AS (
    SELECT DISTINCT ON (member_id) member_id, unit, occurred_at
    FROM acts ORDER BY member_id, occurred_at, unit
), nexts AS (
    SELECT DISTINCT ON (a.member_id) a.member_id, a.unit
    FROM acts a JOIN firsts f ON f.member_id = a.member_id AND a.unit <> f.unit
    ORDER BY a.member_id, a.occurred_at, a.unit
)
SELECT f.unit AS from_unit, coalesce(n.unit, '') AS to_unit, count(*) AS members
FROM firsts f LEFT JOIN nexts n ON n.member_id = f.member_id
WHERE f.occurred_at >= $5 AND ($4 = '' OR f.unit = $4 OR n.unit = $4)
GROUP BY 1, 2 ORDER BY 1, 2
"""
)

_SPEND = (
    _ACTS
    + """
SELECT unit, currency, sum(spend) AS spend,
       count(DISTINCT member_id) FILTER (WHERE kind <> 'refund') AS members
FROM acts GROUP BY unit, currency ORDER BY unit, currency
"""
)

# RFM over $1 (inclusive) .. $2 (exclusive), in unit $4 ('' the group): purchases and imported
# orders ($3: the spending kinds) by the member they count for; members with a purchase ranked
# among themselves (domain/rfm.py gives the formulas), members registered (there) before the end
# without one scored 1, 1, 1; each named by the segment map ($6, $7, $8: its 25 cells).
# Monetary sums spend in the base currency $5 ('' any).
_RFM = (
    _OWNERS
    + f""", acts AS (
    SELECT coalesce(o.owner, a.member_id) AS member_id, a.kind, a.occurred_at, a.spend,
           a.currency
    FROM activity a LEFT JOIN owners o ON o.member_id = a.member_id
    WHERE a.occurred_at >= $1 AND a.occurred_at < $2 AND a.kind = ANY($3::text[])
      AND ($4 = '' OR a.unit = $4)
), bought AS (
    SELECT member_id,
           count(*) FILTER (WHERE kind <> '{REFUND}') AS frequency,
           coalesce(sum(spend) FILTER (WHERE $5 = '' OR currency = $5), 0) AS monetary,
           max(occurred_at) FILTER (WHERE kind <> '{REFUND}') AS last_at
    FROM acts GROUP BY member_id
), active AS (
    SELECT member_id, frequency, monetary,
           (($2::timestamptz - interval '1 microsecond') AT TIME ZONE 'UTC')::date
             - (last_at AT TIME ZONE 'UTC')::date AS recency_days
    FROM bought WHERE frequency > 0
), scored AS (
    SELECT member_id, recency_days, frequency, monetary,
           1 + (5 * (rank() OVER (ORDER BY recency_days DESC) - 1)) / count(*) OVER () AS r,
           1 + (5 * (rank() OVER (ORDER BY frequency) - 1)) / count(*) OVER () AS f,
           1 + (5 * (rank() OVER (ORDER BY monetary) - 1)) / count(*) OVER () AS m
    FROM active
), registered AS (
    SELECT DISTINCT coalesce(o.owner, g.member_id) AS member_id
    FROM registrations g LEFT JOIN owners o ON o.member_id = g.member_id
    WHERE g.registered_at < $2 AND ($4 = '' OR g.unit = $4)
), everyone AS (
    SELECT member_id, recency_days, frequency, monetary, r, f, m FROM scored
    UNION ALL
    SELECT g.member_id, NULL, 0, coalesce(b.monetary, 0), 1, 1, 1
    FROM registered g LEFT JOIN bought b ON b.member_id = g.member_id
    WHERE NOT EXISTS (SELECT 1 FROM scored s WHERE s.member_id = g.member_id)
    UNION ALL
    SELECT b.member_id, NULL, 0, b.monetary, 1, 1, 1
    FROM bought b
    WHERE b.frequency = 0
      AND NOT EXISTS (SELECT 1 FROM registered g WHERE g.member_id = b.member_id)
), named AS (
    SELECT e.*, c.segment
    FROM everyone e
    JOIN unnest($6::int[], $7::int[], $8::text[]) AS c (r, fm, segment)
      ON c.r = e.r AND c.fm = (e.f + e.m + 1) / 2
)"""
)

# Members by their (R, F, M) scores, with their monetary values summed: at most 125 rows, from
# which the domain counts the segments and fills the recency x frequency grid.
_RFM_GROUPS = (
    _RFM
    + """
SELECT r, f, m, count(*) AS members, sum(monetary) AS monetary FROM everyone GROUP BY r, f, m
"""
)

# One segment's members ($9) after member $10, $11 of them, erased members left out.
_RFM_MEMBERS = (
    _RFM
    + """
SELECT n.* FROM named n
WHERE n.segment = $9 AND n.member_id > $10
  AND NOT EXISTS (SELECT 1 FROM erased_members x WHERE x.member_id = n.member_id)
ORDER BY n.member_id LIMIT $11
"""
)

# Registration cohorts. Each member (a merged member: its survivor) joined at its earliest
# registration; the cohorts are the members who joined in the period ($1 .. $2), at unit $4 if
# one is named; their activity of kinds $3 in the period (at unit $4) by month.
_COHORT_MEMBERS = (
    _OWNERS
    + """, firsts AS (
    SELECT DISTINCT ON (coalesce(o.owner, r.member_id))
           coalesce(o.owner, r.member_id) AS member_id, r.unit, r.registered_at, r.imported
    FROM registrations r LEFT JOIN owners o ON o.member_id = r.member_id
    ORDER BY coalesce(o.owner, r.member_id), r.registered_at, r.unit
), cohort AS (
    SELECT member_id, imported,
           to_char(registered_at AT TIME ZONE 'UTC', 'YYYY-MM') AS cohort
    FROM firsts
    WHERE registered_at >= $1 AND registered_at < $2 AND ($4 = '' OR unit = $4)
), acts AS (
    SELECT DISTINCT coalesce(o.owner, a.member_id) AS member_id,
           to_char(a.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month
    FROM activity a LEFT JOIN owners o ON o.member_id = a.member_id
    WHERE a.occurred_at >= $1 AND a.occurred_at < $2 AND a.kind = ANY($3::text[])
      AND ($4 = '' OR a.unit = $4)
)"""
)

_COHORT_SIZES = (
    _COHORT_MEMBERS
    + """
SELECT cohort, count(*) AS members, count(*) FILTER (WHERE imported) AS imported
FROM cohort GROUP BY cohort
"""
)

_COHORT_ACTIVITY = (
    _COHORT_MEMBERS
    + """
SELECT c.cohort, a.month, count(*) AS active
FROM cohort c JOIN acts a ON a.member_id = c.member_id AND a.month >= c.cohort
GROUP BY 1, 2
"""
)

# The programme's members month by month: the months ($5) with the moment each ends ($6: its
# end or the period's, if sooner); members registered (at unit $4, if one is named) before it,
# and members active (there) in the month, $3 the kinds of activity, $7 those that redeem.
_HEALTH_MEMBERS = (
    _OWNERS
    + """, months AS (
    SELECT * FROM unnest($5::text[], $6::timestamptz[]) AS m(month, bound)
), regs AS (
    SELECT coalesce(o.owner, r.member_id) AS member_id, min(r.registered_at) AS registered_at
    FROM registrations r LEFT JOIN owners o ON o.member_id = r.member_id
    WHERE $4 = '' OR r.unit = $4
    GROUP BY 1
), acts AS (
    SELECT coalesce(o.owner, a.member_id) AS member_id,
           to_char(a.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month,
           bool_or(a.kind = ANY($7::text[])) AS redeemed
    FROM activity a LEFT JOIN owners o ON o.member_id = a.member_id
    WHERE a.occurred_at >= $1 AND a.occurred_at < $2 AND a.kind = ANY($3::text[])
      AND ($4 = '' OR a.unit = $4)
    GROUP BY 1, 2
)"""
)

_HEALTH_ACTIVITY = (
    _HEALTH_MEMBERS
    + """
SELECT m.month,
       (SELECT count(*) FROM regs r WHERE r.registered_at < m.bound) AS registered,
       count(a.member_id) AS active,
       count(a.member_id) FILTER (WHERE r.registered_at IS NULL OR r.registered_at >= m.bound)
           AS unregistered,
       count(a.member_id) FILTER (WHERE a.redeemed) AS redeeming
FROM months m
LEFT JOIN acts a ON a.month = m.month
LEFT JOIN regs r ON r.member_id = a.member_id
GROUP BY m.month, m.bound
"""
)

# Each member's tier at each month's end: its latest tier change before it; with a unit, the
# members of that unit in the month (registered there by its end, or active there in it), a
# set joined by (month, member) (an `OR EXISTS` per member and month scanned the activity for
# each: seconds at a few thousand members).
_HEALTH_TIERS = (
    _HEALTH_MEMBERS
    + """, tiers AS (
    SELECT coalesce(o.owner, t.member_id) AS member_id, t.effective_at, t.to_tier
    FROM tier_changes t LEFT JOIN owners o ON o.member_id = t.member_id
), present AS (
    SELECT m.month, r.member_id FROM months m JOIN regs r ON r.registered_at < m.bound
    WHERE $4 <> ''
    UNION
    SELECT a.month, a.member_id FROM acts a WHERE $4 <> ''
)
SELECT m.month, x.to_tier AS tier, count(*) AS members
FROM months m CROSS JOIN LATERAL (
    SELECT DISTINCT ON (t.member_id) t.member_id, t.to_tier
    FROM tiers t WHERE t.effective_at < m.bound
    ORDER BY t.member_id, t.effective_at DESC, t.to_tier
) x
LEFT JOIN present p ON p.month = m.month AND p.member_id = x.member_id
WHERE x.to_tier <> '' AND ($4 = '' OR p.member_id IS NOT NULL)
GROUP BY 1, 2
"""
)

# Benefits used in the period ($3: the kind; releases delete the use), by month and the
# user's tier when it was used. Set-based: each member's tier changes as spans (its latest
# change at a moment wins, the least tier of changes at the same moment), from one change to
# the next, and the uses joined to the span they fall in by member (a hash join: no subquery
# per use, which read every tier change through the merges for each use).
_HEALTH_BENEFITS = (
    _OWNERS
    + """, changes AS (
    SELECT coalesce(o.owner, t.member_id) AS member_id, t.effective_at, min(t.to_tier) AS to_tier
    FROM tier_changes t LEFT JOIN owners o ON o.member_id = t.member_id
    GROUP BY 1, 2
), spans AS (
    SELECT member_id, effective_at, to_tier,
           lead(effective_at) OVER (PARTITION BY member_id ORDER BY effective_at) AS until
    FROM changes
), uses AS (
    SELECT coalesce(o.owner, a.member_id) AS member_id, a.occurred_at,
           to_char(a.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month
    FROM activity a LEFT JOIN owners o ON o.member_id = a.member_id
    WHERE a.occurred_at >= $1 AND a.occurred_at < $2 AND a.kind = $3 AND ($4 = '' OR a.unit = $4)
)
SELECT u.month, coalesce(s.to_tier, '') AS tier, count(*) AS uses,
       count(DISTINCT u.member_id) AS members
FROM uses u LEFT JOIN spans s
  ON s.member_id = u.member_id AND s.effective_at <= u.occurred_at
 AND (s.until IS NULL OR u.occurred_at < s.until)
GROUP BY 1, 2
"""
)


_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


class FigureRows:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _conn(self) -> Any:
        return await driver_connection(self.session)

    # --- the points liability -------------------------------------------------------------------

    async def posting_sums(self, start: datetime, end: datetime) -> list[tuple[str, str, int]]:
        """The period's postings: (unit, kind, points) summed by unit, kind and sign."""
        rows = await (await self._conn()).fetch(
            "SELECT unit, kind, sum(points) AS points FROM ledger_postings "
            "WHERE posted_at >= $1 AND posted_at < $2 GROUP BY unit, kind, sign(points)",
            start,
            end,
        )
        return [(r["unit"], r["kind"], int(r["points"])) for r in rows]

    async def lapsed_sums(self, start: datetime, end: datetime) -> list[tuple[str, str, int]]:
        """The period's expiry and erasure movements: (issuing unit, kind, points)."""
        rows = await (await self._conn()).fetch(
            "SELECT earned_unit, kind, sum(points) AS points FROM lot_movements "
            "WHERE posted_at >= $1 AND posted_at < $2 AND kind = ANY($3::text[]) "
            "GROUP BY earned_unit, kind",
            start,
            end,
            list(LAPSING),
        )
        return [(r["earned_unit"], r["kind"], int(r["points"])) for r in rows]

    async def outstanding(self, end: datetime) -> list[tuple[str, str, int]]:
        """Every lot movement before `end`: (issuing unit, expiry month or '', points)."""
        rows = await (await self._conn()).fetch(
            "SELECT earned_unit, "
            "coalesce(to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM'), '') AS month, "
            "sum(points) AS points FROM lot_movements WHERE posted_at < $1 "
            "GROUP BY 1, 2",
            end,
        )
        return [(r["earned_unit"], r["month"], int(r["points"])) for r in rows]

    async def stored_liability(
        self,
    ) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]], list[tuple[str, str, int]]]:
        """Every fact so far as `posting_sums`, `lapsed_sums` and `outstanding` give a period's,
        read from the sums the triggers keep (`liability_counts`), in one statement."""
        rows = await (await self._conn()).fetch(
            "SELECT source, unit, kind, sign, month, sum(points) AS points "
            "FROM liability_counts GROUP BY 1, 2, 3, 4, 5"
        )
        postings: dict[tuple[str, str, int], int] = {}
        lapsed: dict[tuple[str, str], int] = {}
        outstanding: dict[tuple[str, str], int] = {}
        for r in rows:
            points = int(r["points"])
            if r["source"] == "posting":
                key = (r["unit"], r["kind"], int(r["sign"]))
                postings[key] = postings.get(key, 0) + points
                continue
            if r["kind"] in LAPSING:
                lapsed[r["unit"], r["kind"]] = lapsed.get((r["unit"], r["kind"]), 0) + points
            outstanding[r["unit"], r["month"]] = (
                outstanding.get((r["unit"], r["month"]), 0) + points
            )
        return (
            [(unit, kind, points) for (unit, kind, _), points in postings.items()],
            [(unit, kind, points) for (unit, kind), points in lapsed.items()],
            [(unit, month, points) for (unit, month), points in outstanding.items()],
        )

    async def programme_at(self, moment: datetime) -> tuple[int, str, Decimal] | None:
        """(version, base currency, point value) of the programme in force at `moment` (the
        first one if none was yet)."""
        row = await (await self._conn()).fetchrow(
            "SELECT version, base_currency, point_value FROM programmes "
            "ORDER BY effective_from <= $1 DESC, "
            "CASE WHEN effective_from <= $1 THEN effective_from END DESC, "
            "effective_from, version DESC LIMIT 1",
            moment,
        )
        if row is None:
            return None
        return int(row["version"]), row["base_currency"], Decimal(row["point_value"])

    async def known_unit(self, unit: str) -> bool:
        conn = await self._conn()
        return bool(await conn.fetchval("SELECT 1 FROM known_units WHERE unit = $1", unit))

    # --- members across units -------------------------------------------------------------------

    async def months(self, start: datetime, end: datetime, unit: str) -> list[MonthOfMembers]:
        rows = await (await self._conn()).fetch(_MONTHS, start, end, list(ACTIVE), unit)
        return [MonthOfMembers(r["month"], int(r["active"]), int(r["multi"])) for r in rows]

    async def whole_period(self, start: datetime, end: datetime, unit: str) -> tuple[int, int]:
        row = await (await self._conn()).fetchrow(_WHOLE_PERIOD, start, end, list(ACTIVE), unit)
        return int(row["active"]), int(row["multi"])

    async def overlap(
        self, start: datetime, end: datetime, unit: str
    ) -> list[tuple[str, str, int]]:
        rows = await (await self._conn()).fetch(_OVERLAP, start, end, list(ACTIVE), unit)
        return [(r["unit"], r["other_unit"], int(r["members"])) for r in rows]

    async def flows(self, start: datetime, end: datetime, unit: str) -> list[tuple[str, str, int]]:
        rows = await (await self._conn()).fetch(_FLOWS, _BEGINNING, end, list(ACTIVE), unit, start)
        return [(r["from_unit"], r["to_unit"], int(r["members"])) for r in rows]

    async def spend(self, start: datetime, end: datetime) -> list[tuple[str, str, Decimal, int]]:
        """(unit, currency, spend, members who bought) of the period's purchases, refunds and
        imported orders."""
        rows = await (await self._conn()).fetch(_SPEND, start, end, list(SPENDING))
        return [(r["unit"], r["currency"], Decimal(r["spend"]), int(r["members"])) for r in rows]

    # --- RFM ------------------------------------------------------------------------------------

    def _rfm_args(self, start: datetime, end: datetime, unit: str, currency: str) -> list[Any]:
        return [
            start,
            end,
            list(SPENDING),
            unit,
            currency,
            [c.recency_score for c in SEGMENT_CELLS],
            [c.frequency_monetary_score for c in SEGMENT_CELLS],
            [c.segment.value for c in SEGMENT_CELLS],
        ]

    async def rfm_groups(
        self, start: datetime, end: datetime, unit: str, currency: str
    ) -> list[ScoreGroup]:
        """Members by their (R, F, M) scores (erased members included), monetary summed."""
        rows = await (await self._conn()).fetch(
            _RFM_GROUPS, *self._rfm_args(start, end, unit, currency)
        )
        return score_groups_of(rows)

    async def rfm_members(
        self,
        start: datetime,
        end: datetime,
        unit: str,
        currency: str,
        segment: str,
        after: str,
        limit: int,
    ) -> list[RfmScore]:
        """Up to `limit` members of `segment` with IDs after `after`, by ID; not the erased."""
        rows = await (await self._conn()).fetch(
            _RFM_MEMBERS, *self._rfm_args(start, end, unit, currency), segment, after, limit
        )
        return rfm_scores(rows)

    # --- cohorts and programme health -----------------------------------------------------------

    async def cohort_sizes(
        self, start: datetime, end: datetime, unit: str
    ) -> list[tuple[str, int, int]]:
        """(cohort month, members, imported members) of members who joined in the period."""
        rows = await (await self._conn()).fetch(_COHORT_SIZES, start, end, list(ACTIVE), unit)
        return [(r["cohort"], int(r["members"]), int(r["imported"])) for r in rows]

    async def cohort_activity(
        self, start: datetime, end: datetime, unit: str
    ) -> dict[tuple[str, str], int]:
        """(cohort month, month) -> the cohort's members active in the month."""
        rows = await (await self._conn()).fetch(_COHORT_ACTIVITY, start, end, list(ACTIVE), unit)
        return {(r["cohort"], r["month"]): int(r["active"]) for r in rows}

    def _health_args(
        self, start: datetime, end: datetime, unit: str, months: list[tuple[str, datetime]]
    ) -> tuple[Any, ...]:
        return (
            start,
            end,
            list(ACTIVE),
            unit,
            [m for m, _ in months],
            [b for _, b in months],
            list(REDEEMING),
        )

    async def health_activity(
        self, start: datetime, end: datetime, unit: str, months: list[tuple[str, datetime]]
    ) -> dict[str, MonthActivity]:
        """Each month's (month, the moment it ends) members registered, active and redeeming."""
        rows = await (await self._conn()).fetch(
            _HEALTH_ACTIVITY, *self._health_args(start, end, unit, months)
        )
        return {
            r["month"]: MonthActivity(
                r["month"],
                int(r["registered"]),
                int(r["active"]),
                int(r["unregistered"]),
                int(r["redeeming"]),
            )
            for r in rows
        }

    async def health_tiers(
        self, start: datetime, end: datetime, unit: str, months: list[tuple[str, datetime]]
    ) -> dict[str, list[tuple[str, int]]]:
        """Each month's members by their tier at its end."""
        rows = await (await self._conn()).fetch(
            _HEALTH_TIERS, *self._health_args(start, end, unit, months)
        )
        found: dict[str, list[tuple[str, int]]] = {}
        for r in rows:
            found.setdefault(r["month"], []).append((r["tier"], int(r["members"])))
        return found

    async def health_benefits(
        self, start: datetime, end: datetime, unit: str
    ) -> dict[str, list[TierBenefits]]:
        """Each month's benefits used, by the user's tier at the time."""
        rows = await (await self._conn()).fetch(_HEALTH_BENEFITS, start, end, CONSUMPTION, unit)
        found: dict[str, list[TierBenefits]] = {}
        for r in rows:
            found.setdefault(r["month"], []).append(
                TierBenefits(r["tier"], int(r["uses"]), int(r["members"]))
            )
        return found


def score_groups_of(rows: Any) -> list[ScoreGroup]:
    """Rows (r, f, m, members, monetary) as score groups."""
    return [
        ScoreGroup(int(r["r"]), int(r["f"]), int(r["m"]), int(r["members"]), Decimal(r["monetary"]))
        for r in rows
    ]


def rfm_scores(rows: Any) -> list[RfmScore]:
    """Members' RFM rows (member_id, recency_days, frequency, monetary, r, f, m) as scores."""
    return [
        RfmScore(
            member_id=r["member_id"],
            recency_days=r["recency_days"],
            frequency=int(r["frequency"]),
            monetary=Decimal(r["monetary"]),
            recency_score=int(r["r"]),
            frequency_score=int(r["f"]),
            monetary_score=int(r["m"]),
        )
        for r in rows
    ]
