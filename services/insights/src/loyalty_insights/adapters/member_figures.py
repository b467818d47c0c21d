"""The members' figures table (`member_figures`): computed from the facts in a few set-based
statements, for every member at once (a full refresh) or for the members an event touched (an
incremental recompute, in the event's transaction).

Both run the same SQL over the facts; only where the members come from differs: a full refresh
reads every fact table whole and maps absorbed members to their survivor through the merges, an
incremental recompute starts from the members the event named, climbs to their survivors and
reads the facts of each survivor's whole family by key. RFM is scored over the trailing 12
months `[$1, $2)`: a full refresh ranks the members (domain/rfm.py's formulas, the same as the
on-demand figure) and keeps each score's cut point; an incremental recompute scores against
the last refresh's cut points (domain/figures.py).

Concurrency. Every transaction that recomputes members holds the shared advisory lock
`TOUCH_LOCK` from before it computes until it commits. A full refresh takes it exclusively for
an instant and notes the moment `since`: a recompute that committed before `since` is in every
snapshot the refresh reads after it; any other recompute stamps its rows' `figured_at` after
`since`, and the refresh overwrites or deletes only rows figured before `since`. So a refresh
never loses an incremental update, and never blocks the consumers for longer than that instant
(beyond the rows it writes). Refreshes themselves take `REFRESH_LOCK`: one at a time across
replicas.

A row a refresh kept was scored against the cut points before it (its recompute could not see
the refresh's, uncommitted then). Every row says whose cut points scored it (`scored_by`); once
the refresh committed, `stale_scores` waits for the recomputes in flight (the same exclusive
instant) and names the rows figured since the refresh began and scored by another: recomputed
again, they score against the new cut points, and every row agrees with the refresh's ranking.
A recompute that begins after that instant reads the new cut points itself.

An incremental refresh (service_layer/refresh.py) keeps the same rules after the same moment:
it recomputes the members whose facts moved with the window (`_MOVED`; each batch's free
member locks held for its statement) but not rows figured since its moment
(`_RECOMPUTE_KEEPING`), re-ranks every row (`_RESCORE`) and writes only rows figured before
its moment or recomputed by itself (`_RESCORE_WRITE`); the rows it left are settled as a full
refresh's are (`stale_scores`, from its moment `since`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from loyalty_kit.db import driver_connection
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_insights.adapters.figures import OWNERS, family, rfm_scores
from loyalty_insights.domain.crossunit import ACTIVE, REFUND, SPENDING
from loyalty_insights.domain.figures import CutPoints, year_before
from loyalty_insights.domain.rfm import SEGMENT_CELLS, RfmCell, RfmScore

OFFERS_PURPOSE = "CONSENT_PURPOSE_PERSONALISED_OFFERS"

REFRESH_LOCK = 0x1F_16_0E_F1  # one full refresh at a time (transaction-scoped)
TOUCH_LOCK = 0x1F_16_0E_F2  # shared by recomputes, exclusive for a refresh's instant
MEMBER_LOCK = 0x1F_16_0E  # with the member ID's hash (the two-key lock space): its recompute

STAGE_WORK_MEM = "256MB"

# Recomputes of at most this many members run generic plans (`MemberFigures.recompute`).
GENERIC_PLANS_UP_TO = 64

# The columns a refresh writes; `tags`, `badges`, `predicted_value_12m` and `p_alive` are others'
# work.
COLUMNS = (
    "registered_at",
    "registered_unit",
    "first_active_at",
    "last_active_at",
    "units",
    "units_12m",
    "visits_12m",
    "spend_12m",
    "spend_units_12m",
    "unit_spend_12m",
    "bought_units_12m",
    "first_unit",
    "next_unit",
    "new_12m",
    "recency_days",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "rfm_segment",
    "tier",
    "birthday_month",
    "offers_consent",
    "last_bought_at",
    "window_end",
)

# A full refresh resolves the merges once into a small analysed table (`fresh_owners`, made by
# `stage`), so the planner knows it holds a few rows and hashes it, not the facts it joins.
_FULL_OWNERS = "WITH owners AS NOT MATERIALIZED (SELECT member_id, owner FROM fresh_owners)"
_OWNERS_TABLE = (
    "CREATE TEMPORARY TABLE fresh_owners ON COMMIT DROP AS "
    + OWNERS
    + "\nSELECT member_id, owner FROM owners"
)

_FAMILY_OWNERS = family("$9")


def _full_source(table: str) -> str:
    return (
        f"(SELECT coalesce(o.owner, x.member_id) AS owner, x.* FROM {table} x "
        "LEFT JOIN owners o ON o.member_id = x.member_id) AS s"
    )


def _family_source(table: str) -> str:
    """Each family member's rows by key: a lateral look-up the planner cannot flatten (`OFFSET
    0`), so it probes the member-first key per member instead of hashing the whole table (it
    cannot tell how few members the recursive CTE yields): a batch's 250 members' recompute
    over 100,000 members' facts 35 ms instead of 680 ms."""
    return (
        f"(SELECT f.owner, x.* FROM fam f CROSS JOIN LATERAL "
        f"(SELECT * FROM {table} y WHERE y.member_id = f.member_id OFFSET 0) AS x) AS s"
    )


_IN_WINDOW = "s.occurred_at >= $1 AND s.occurred_at < $2"


def _body(source: Any) -> str:
    """Each owner's figures but the scores ($1..$5: window start, end, active kinds, spending
    kinds, base currency), as the CTE `base`."""
    return f""", kinds AS (  -- each fact's tests once (OFFSET 0: not repeated per aggregate)
    SELECT s.owner, s.unit, s.occurred_at, s.spend, s.currency,
           s.kind = ANY($3::text[]) AS act, s.kind = ANY($4::text[]) AS buy,
           s.kind <> '{REFUND}' AS visit, {_IN_WINDOW} AS win
    FROM {source("activity")} OFFSET 0
), unit_acts AS (
    SELECT owner, unit,
           min(occurred_at) FILTER (WHERE act) AS first_active_at,
           max(occurred_at) FILTER (WHERE act) AS last_active_at,
           bool_or(act AND win) AS active_12m,
           count(*) FILTER (WHERE buy AND visit AND win) AS visits,
           sum(spend) FILTER (WHERE buy AND win AND ($5 = '' OR currency = $5)) AS spend,
           max(occurred_at) FILTER (WHERE buy AND visit AND win) AS last_bought_at,
           bool_or(buy AND win) AS bought,
           bool_or(buy AND visit AND win AND ($5 = '' OR currency = $5)) AS bought_here
    FROM kinds GROUP BY owner, unit
), acts AS (  -- no ordered aggregate: both levels hash (base sorts the few units)
    SELECT owner, min(first_active_at) AS first_active_at, max(last_active_at) AS last_active_at,
           array_agg(unit) FILTER (WHERE first_active_at IS NOT NULL) AS units,
           array_agg(first_active_at) FILTER (WHERE first_active_at IS NOT NULL) AS firsts,
           array_agg(unit) FILTER (WHERE active_12m) AS units_12m,
           sum(visits) AS visits, coalesce(sum(spend), 0) AS spend,
           max(last_bought_at) AS last_bought_at, bool_or(bought) AS bought,
           -- the spend by unit: two aggregates of the same rows, so in the same order
           array_agg(unit) FILTER (WHERE spend IS NOT NULL) AS spend_units,
           array_agg(spend) FILTER (WHERE spend IS NOT NULL) AS unit_spend,
           array_agg(unit) FILTER (WHERE bought_here) AS bought_units
    FROM unit_acts GROUP BY owner
), regs AS (
    SELECT DISTINCT ON (s.owner) s.owner, s.unit, s.registered_at
    FROM {source("registrations")} ORDER BY s.owner, s.registered_at, s.unit
), tiers AS (
    SELECT DISTINCT ON (s.owner) s.owner, s.to_tier
    FROM {source("tier_changes")} ORDER BY s.owner, s.effective_at DESC, s.to_tier
), offers AS (
    SELECT DISTINCT ON (s.owner) s.owner, s.granted
    FROM {source("consents")} WHERE s.purpose = '{OFFERS_PURPOSE}'
    ORDER BY s.owner, s.changed_at DESC
), births AS (
    SELECT DISTINCT ON (s.owner) s.owner, s.month
    FROM {source("birthdays")} ORDER BY s.owner, s.member_id = s.owner DESC, s.changed_at DESC
), everyone AS (
    SELECT owner FROM acts UNION SELECT owner FROM regs UNION SELECT owner FROM tiers
    UNION SELECT owner FROM offers UNION SELECT owner FROM births
), base AS (
    SELECT e.owner AS member_id, r.registered_at, r.unit AS registered_unit,
           a.first_active_at, a.last_active_at,
           coalesce(ARRAY(SELECT u FROM unnest(a.units) AS u ORDER BY u), '{{}}') AS units,
           coalesce(ARRAY(SELECT u FROM unnest(a.units_12m) AS u ORDER BY u), '{{}}')
               AS units_12m,
           (SELECT u FROM unnest(a.units, a.firsts) AS x (u, t) ORDER BY t, u LIMIT 1)
               AS first_unit,
           coalesce((SELECT u FROM unnest(a.units, a.firsts) AS x (u, t)
                     ORDER BY t, u OFFSET 1 LIMIT 1), '') AS next_unit,
           coalesce(a.first_active_at >= $1 AND a.first_active_at < $2, false) AS new_12m,
           coalesce(a.visits, 0) AS visits_12m, coalesce(a.spend, 0) AS spend_12m,
           -- by unit: the same row whichever plan aggregated it (a full refresh or a recompute)
           coalesce(ARRAY(SELECT u FROM unnest(a.spend_units, a.unit_spend) AS x (u, v)
                          ORDER BY u), '{{}}') AS spend_units_12m,
           coalesce(ARRAY(SELECT v FROM unnest(a.spend_units, a.unit_spend) AS x (u, v)
                          ORDER BY u), '{{}}') AS unit_spend_12m,
           coalesce(ARRAY(SELECT u FROM unnest(a.bought_units) AS u ORDER BY u), '{{}}')
               AS bought_units_12m,
           CASE WHEN a.visits > 0 THEN
               (($2::timestamptz - interval '1 microsecond') AT TIME ZONE 'UTC')::date
               - (a.last_bought_at AT TIME ZONE 'UTC')::date END AS recency_days,
           a.last_bought_at, $2::timestamptz AS window_end,
           (r.registered_at < $2 OR coalesce(a.bought, false)) AS scored,
           nullif(t.to_tier, '') AS tier, b.month AS birthday_month,
           coalesce(c.granted, true) AS offers_consent,
           EXISTS (SELECT 1 FROM erased_members x WHERE x.member_id = e.owner) AS erased
    FROM everyone e
    LEFT JOIN acts a ON a.owner = e.owner
    LEFT JOIN regs r ON r.owner = e.owner
    LEFT JOIN tiers t ON t.owner = e.owner
    LEFT JOIN offers c ON c.owner = e.owner
    LEFT JOIN births b ON b.owner = e.owner
)"""


# Scores and segments ($6, $7, $8: the segment map's cells) from `scores` (member_id, r, f, m).
_NAMED = """, named AS (
    SELECT b.*, k.r AS rfm_r, k.f AS rfm_f, k.m AS rfm_m, c.segment AS rfm_segment,
           k.scored_by
    FROM base b
    LEFT JOIN scores k ON k.member_id = b.member_id
    LEFT JOIN unnest($6::int[], $7::int[], $8::text[]) AS c (r, fm, segment)
      ON c.r = k.r AND c.fm = (k.f + k.m + 1) / 2
)"""

# A full refresh ranks every member who bought in the window (domain/rfm.py's formulas).
_FULL = (
    _FULL_OWNERS
    + _body(_full_source)
    + """, ranked AS (
    SELECT member_id,
           1 + (5 * (rank() OVER (ORDER BY recency_days DESC) - 1)) / count(*) OVER () AS r,
           1 + (5 * (rank() OVER (ORDER BY visits_12m) - 1)) / count(*) OVER () AS f,
           1 + (5 * (rank() OVER (ORDER BY spend_12m) - 1)) / count(*) OVER () AS m
    FROM base WHERE visits_12m > 0
), scores AS (
    SELECT b.member_id, coalesce(k.r, 1) AS r, coalesce(k.f, 1) AS f, coalesce(k.m, 1) AS m,
           NULL::bigint AS scored_by  -- the refresh's own id, given when it writes
    FROM base b LEFT JOIN ranked k ON k.member_id = b.member_id WHERE b.scored
)"""
    + _NAMED
)

# An incremental recompute scores against the last refresh's cut points (none yet: no scores).
_FAMILY = (
    _FAMILY_OWNERS
    + _body(_family_source)
    + """, cuts AS (
    SELECT id, r_cuts, f_cuts, m_cuts FROM figure_refreshes ORDER BY id DESC LIMIT 1
), scores AS (
    SELECT b.member_id, k.id AS scored_by,
           CASE WHEN b.visits_12m = 0 THEN 1 ELSE
               1 + (SELECT count(*) FROM unnest(k.r_cuts) x WHERE b.recency_days <= x) END AS r,
           CASE WHEN b.visits_12m = 0 THEN 1 ELSE
               1 + (SELECT count(*) FROM unnest(k.f_cuts) x WHERE b.visits_12m >= x) END AS f,
           CASE WHEN b.visits_12m = 0 THEN 1 ELSE
               1 + (SELECT count(*) FROM unnest(k.m_cuts) x WHERE b.spend_12m >= x) END AS m
    FROM base b CROSS JOIN cuts k WHERE b.scored
)"""
    + _NAMED
)

_STAMPS = ("updated_at", "figured_at", "scored_by")
_SET = ", ".join(f"{c} = excluded.{c}" for c in (*_STAMPS, *COLUMNS))
_INSERT = f"INSERT INTO member_figures (member_id, {', '.join(_STAMPS)}, {', '.join(COLUMNS)})"


def _select(scored_by: str) -> str:
    return f"SELECT member_id, clock_timestamp(), clock_timestamp(), {scored_by}, " + ", ".join(
        COLUMNS
    )


_RECOMPUTE = (
    _FAMILY
    + f"""
{_INSERT}
{_select("scored_by")} FROM named WHERE NOT erased
ON CONFLICT (member_id) DO UPDATE SET {_SET}
"""
)

# Members named ($1) that no longer count for themselves: absorbed or erased.
_FORGET = """
DELETE FROM member_figures m
WHERE m.member_id = ANY($1::text[])
  AND (EXISTS (SELECT 1 FROM member_merges g WHERE g.absorbed_id = m.member_id)
       OR EXISTS (SELECT 1 FROM erased_members x WHERE x.member_id = m.member_id))
"""

# The incremental refresh's recompute ($10: its moment): as `_RECOMPUTE`, but a row recomputed
# since the refresh's moment is newer (kept); the members whose rows it wrote.
_RECOMPUTE_KEEPING = (
    _FAMILY
    + f"""
{_INSERT}
{_select("scored_by")} FROM named WHERE NOT erased
ON CONFLICT (member_id) DO UPDATE SET {_SET}
WHERE coalesce(member_figures.figured_at, '-infinity') < $10
RETURNING member_id
"""
)

# Erased members' figures still rank (a full refresh ranks every owner of facts, erased or not;
# their facts stay): the $9 erased members' metrics, as the full refresh's `base` has them.
_GHOSTS = (
    "CREATE TEMPORARY TABLE ghost_figures ON COMMIT DROP AS "
    + _FAMILY
    + "\nSELECT member_id, recency_days, visits_12m, spend_12m FROM named "
    "WHERE erased AND visits_12m > 0"
)

# Every row re-ranked as of $1 from the rows themselves (recency from its last purchase), with
# the erased members' metrics, as `_FULL` ranks them; the segments from the map ($2..$4); the
# rows the refresh recomputed ($5) marked.
_RESCORE = """
CREATE TEMPORARY TABLE rescored ON COMMIT DROP AS
WITH pool AS (
    SELECT member_id, false AS ghost, rfm_r IS NOT NULL AS scored, visits_12m, spend_12m,
           CASE WHEN visits_12m > 0 THEN
               (($1::timestamptz - interval '1 microsecond') AT TIME ZONE 'UTC')::date
               - (last_bought_at AT TIME ZONE 'UTC')::date END AS recency_days
    FROM member_figures
    UNION ALL
    SELECT member_id, true, false, visits_12m, spend_12m, recency_days FROM ghost_figures
), ranked AS (
    SELECT member_id, ghost,
           1 + (5 * (rank() OVER (ORDER BY recency_days DESC) - 1)) / count(*) OVER () AS r,
           1 + (5 * (rank() OVER (ORDER BY visits_12m) - 1)) / count(*) OVER () AS f,
           1 + (5 * (rank() OVER (ORDER BY spend_12m) - 1)) / count(*) OVER () AS m
    FROM pool WHERE visits_12m > 0
), scores AS (
    SELECT p.member_id, p.ghost, p.recency_days, p.visits_12m, p.spend_12m,
           CASE WHEN p.scored OR p.ghost THEN coalesce(k.r, 1) END AS r,
           CASE WHEN p.scored OR p.ghost THEN coalesce(k.f, 1) END AS f,
           CASE WHEN p.scored OR p.ghost THEN coalesce(k.m, 1) END AS m
    FROM pool p LEFT JOIN ranked k ON k.member_id = p.member_id AND k.ghost = p.ghost
)
SELECT s.member_id, s.ghost, s.recency_days, s.visits_12m, s.spend_12m, s.r AS rfm_r,
       s.f AS rfm_f, s.m AS rfm_m, c.segment AS rfm_segment, x.id IS NOT NULL AS recomputed
FROM scores s
LEFT JOIN unnest($2::int[], $3::int[], $4::text[]) AS c (r, fm, segment)
  ON c.r = s.r AND c.fm = (s.f + s.m + 1) / 2
LEFT JOIN unnest($5::text[]) AS x (id) ON x.id = s.member_id AND NOT s.ghost
"""

# The rows whose recency or scores moved, and the rows the refresh recomputed, scored by it ($1)
# as of $2; but rows recomputed since its moment ($3) by others (newer: kept).
_RESCORE_WRITE = """
UPDATE member_figures m
SET recency_days = r.recency_days, rfm_r = r.rfm_r, rfm_f = r.rfm_f, rfm_m = r.rfm_m,
    rfm_segment = r.rfm_segment, scored_by = $1, window_end = $2,
    figured_at = clock_timestamp(), updated_at = clock_timestamp()
FROM rescored r
WHERE r.member_id = m.member_id AND NOT r.ghost
  AND (coalesce(m.figured_at, '-infinity') < $3 OR r.recomputed)
  AND (r.recomputed
       OR (m.recency_days, m.rfm_r, m.rfm_f, m.rfm_m, m.rfm_segment)
          IS DISTINCT FROM (r.recency_days, r.rfm_r, r.rfm_f, r.rfm_m, r.rfm_segment))
"""

# Rows of members absorbed or erased (their events' recomputes removed them; a repair).
_REMOVE_GONE = """
DELETE FROM member_figures m
WHERE coalesce(m.figured_at, '-infinity') < $1
  AND m.member_id IN (SELECT absorbed_id FROM member_merges
                      UNION SELECT member_id FROM erased_members)
"""

# Members with facts whose place in the window may differ between the windows ending at $3 and
# at $4 (earlier, later): facts leaving it at its start ($1..$2), entering it at its end
# ($3..$4), registrations counting from its end; and rows never figured (made for tags or
# lifetime value before their member's facts were: none figured them since); in the order of
# their lock keys.
_MOVED = """
SELECT member_id FROM (
    SELECT member_id FROM activity
    WHERE (occurred_at >= $1 AND occurred_at < $2) OR (occurred_at >= $3 AND occurred_at < $4)
    UNION
    SELECT member_id FROM registrations WHERE registered_at >= $3 AND registered_at < $4
    UNION
    SELECT member_id FROM member_figures WHERE figured_at IS NULL
) AS moved ORDER BY hashtext(member_id), member_id
"""

_STAGE = "CREATE TEMPORARY TABLE fresh_figures ON COMMIT DROP AS " + _FULL + "\nSELECT * FROM named"


def _cut(agg: str, column: str, score: str) -> str:
    """The array of a metric's cut points for scores 2..5 over the staged rows."""
    return (
        "array["
        + ", ".join(f"{agg}({column}) FILTER (WHERE {score} >= {k})" for k in range(2, 6))
        + "]"
    )


_CUTS = f"""
SELECT {_cut("max", "recency_days", "rfm_r")} AS r_cuts,
       {_cut("min", "visits_12m", "rfm_f")} AS f_cuts,
       {_cut("min", "spend_12m", "rfm_m")} AS m_cuts
FROM {{}} WHERE visits_12m > 0
"""

_BEFORE = "coalesce({}.figured_at, '-infinity') < $1"

# Rows recomputed since the refresh's moment ($1) are newer than what it computed: kept. Its
# rows are scored by its cut points (its id, $2).
_WRITE = f"""
{_INSERT}
{_select("$2::bigint")} FROM fresh_figures WHERE NOT erased
ON CONFLICT (member_id) DO UPDATE SET {_SET} WHERE {_BEFORE.format("member_figures")}
"""

# A row holding tags or badges only (a member insights knows nothing else of yet) keeps them:
# they are identity's and engagement's events' work, not the refresh's; it goes when its member
# is absorbed or erased.
_REMOVE = f"""
DELETE FROM member_figures m
WHERE {_BEFORE.format("m")}
  AND NOT EXISTS (SELECT 1 FROM fresh_figures f WHERE f.member_id = m.member_id AND NOT f.erased)
  AND ((cardinality(m.tags) = 0 AND cardinality(m.badges) = 0)
       OR EXISTS (SELECT 1 FROM member_merges g WHERE g.absorbed_id = m.member_id)
       OR EXISTS (SELECT 1 FROM erased_members x WHERE x.member_id = m.member_id))
"""


@dataclass(frozen=True)
class Refreshed:
    """What a full refresh recorded."""

    id: int
    as_of: datetime
    members: int
    removed: int
    cuts: CutPoints
    full: bool = True
    since: datetime | None = None


@dataclass(frozen=True)
class LastRefresh:
    id: int
    started_at: datetime
    as_of: datetime
    finished_at: datetime
    members: int
    full: bool = True
    since: datetime | None = None  # None: recorded before migration 0013


class MemberFigures:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _conn(self) -> Any:
        return await driver_connection(self.session)

    @staticmethod
    def _args(start: datetime, end: datetime, currency: str) -> list[Any]:
        return [
            start,
            end,
            list(ACTIVE),
            list(SPENDING),
            currency,
            [c.recency_score for c in SEGMENT_CELLS],
            [c.frequency_monetary_score for c in SEGMENT_CELLS],
            [c.segment.value for c in SEGMENT_CELLS],
        ]

    async def recompute(
        self, member_ids: list[str], start: datetime, end: datetime, currency: str
    ) -> None:
        """The rows of the members named (their survivors', that is), in this transaction;
        rows of the named that no longer count for themselves go."""
        if not member_ids:
            return
        conn = await self._conn()
        # A few members' recompute runs its statements' generic plans, kept by the prepared
        # statements (`plan_cache_mode`, for the rest of this transaction): planned afresh for
        # the members named each time, the recompute's statements cost PostgreSQL about three
        # times the CPU of running them (the lateral look-ups by member make the same plan
        # whatever the members). Many members (an import) keep plans made for them.
        if len(member_ids) <= GENERIC_PLANS_UP_TO:
            await conn.execute(
                "SELECT pg_advisory_xact_lock_shared($1), "
                "set_config('plan_cache_mode', 'force_generic_plan', true)",
                TOUCH_LOCK,
            )
        else:
            await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", TOUCH_LOCK)
        # One recompute of a member at a time, each after the other's commit: two events of one
        # member in concurrent transactions would each read the facts without the other's and
        # the later write would lose the earlier fact until the next event or refresh. Taken in
        # the order of the keys themselves (two members' IDs may share a hash): two recomputes
        # never wait for each other in a circle.
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, k) FROM "
            "(SELECT DISTINCT hashtext(m) AS k FROM unnest($2::text[]) AS m) AS keys ORDER BY k",
            MEMBER_LOCK,
            member_ids,
        )
        await conn.execute(_RECOMPUTE, *self._args(start, end, currency), member_ids)
        await conn.execute(_FORGET, member_ids)

    async def try_refresh_lock(self) -> bool:
        conn = await self._conn()
        return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", REFRESH_LOCK))

    async def since(self) -> datetime:
        """The refresh's moment: no recompute in flight (each waits for its commit)."""
        conn = await self._conn()
        await conn.execute("SELECT pg_advisory_lock($1)", TOUCH_LOCK)
        try:
            moment: datetime = await conn.fetchval("SELECT clock_timestamp()")
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", TOUCH_LOCK)
        return moment

    async def next_refresh_id(self) -> int:
        """The id the refresh in this transaction records itself under (its rows carry it)."""
        conn = await self._conn()
        return int(
            await conn.fetchval("SELECT nextval(pg_get_serial_sequence('figure_refreshes', 'id'))")
        )

    async def stale_scores(self, refresh: LastRefresh) -> list[str]:
        """Once the recomputes in flight committed (`since`'s instant), the members whose rows
        were figured since `refresh`'s moment but scored against other cut points (recomputed
        while it ran): few, the events of the refresh's minute."""
        await self.since()
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT member_id FROM member_figures "
            "WHERE figured_at >= $1 AND scored_by IS DISTINCT FROM $2 ORDER BY member_id",
            refresh.since or refresh.started_at,  # its moment (the database's clock, as theirs)
            refresh.id,
        )
        return [r["member_id"] for r in rows]

    async def stage(self, start: datetime, end: datetime, currency: str) -> CutPoints:
        """Every member's figures from the facts into this transaction's staging table; the
        cut points of their scores."""
        conn = await self._conn()
        # Memory for the refresh's aggregates and sorts (this transaction only): hashed in
        # memory instead of sorted on disk, several times faster at a million members.
        await conn.execute(f"SET LOCAL work_mem = '{STAGE_WORK_MEM}'")
        await conn.execute(_OWNERS_TABLE)
        await conn.execute("ANALYZE fresh_owners")
        # Aggregates by hashing: the planner, not knowing how many (member, unit) groups the
        # facts make, would sort every activity row by text keys first (twice as slow).
        await conn.execute("SET LOCAL enable_sort = off")
        await conn.execute(_STAGE, *self._args(start, end, currency))
        await conn.execute("SET LOCAL enable_sort = on")
        await conn.execute("ANALYZE fresh_figures")  # the writes join it: the planner must know it
        return await self._cuts("fresh_figures")

    async def _cuts(self, table: str) -> CutPoints:
        conn = await self._conn()
        cuts = await conn.fetchrow(_CUTS.format(table))
        return CutPoints(
            tuple(cuts["r_cuts"]),
            tuple(cuts["f_cuts"]),
            tuple(None if v is None else Decimal(v) for v in cuts["m_cuts"]),
        )

    async def write(self, since: datetime, refresh_id: int) -> tuple[int, int]:
        """The staged rows into the table, scored by refresh `refresh_id`, but rows recomputed
        since `since` (newer than the staged ones); rows of members no longer counted go.
        (Members with figures, rows removed.)"""
        conn = await self._conn()
        await conn.execute(_WRITE, since, refresh_id)
        removed = await conn.execute(_REMOVE, since)
        members = await conn.fetchval("SELECT count(*) FROM fresh_figures WHERE NOT erased")
        return int(members), int(removed.split()[-1])

    async def record_refresh(
        self, started_at: datetime, finished_at: datetime, refreshed: Refreshed
    ) -> None:
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO figure_refreshes (id, started_at, finished_at, as_of, members, removed, "
            "r_cuts, f_cuts, m_cuts, from_facts, since) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            refreshed.id,
            started_at,
            finished_at,
            refreshed.as_of,
            refreshed.members,
            refreshed.removed,
            list(refreshed.cuts.recency),
            list(refreshed.cuts.frequency),
            list(refreshed.cuts.monetary),
            refreshed.full,
            refreshed.since,
        )

    async def last_refresh(self) -> LastRefresh | None:
        conn = await self._conn()
        row = await conn.fetchrow(
            "SELECT id, started_at, as_of, finished_at, members, from_facts, since "
            "FROM figure_refreshes ORDER BY id DESC LIMIT 1"
        )
        if row is None:
            return None
        return LastRefresh(
            int(row["id"]),
            row["started_at"],
            row["as_of"],
            row["finished_at"],
            int(row["members"]),
            bool(row["from_facts"]),
            row["since"],
        )

    async def last_full_as_of(self) -> datetime | None:
        conn = await self._conn()
        found: datetime | None = await conn.fetchval(
            "SELECT as_of FROM figure_refreshes WHERE from_facts ORDER BY id DESC LIMIT 1"
        )
        return found

    # --- the incremental refresh (service_layer/refresh.py) -------------------------------------

    async def windows_since(
        self, since: datetime
    ) -> tuple[datetime | None, datetime | None] | None:
        """The earliest and latest window end of the rows figured since `since` (recomputed
        by events, or by a refresh beginning then; None, None: none); None when a row's is
        unknown (figured before migration 0013)."""
        conn = await self._conn()
        row = await conn.fetchrow(
            "SELECT min(window_end) AS lo, max(window_end) AS hi, "
            "bool_or(window_end IS NULL) AS unknown FROM member_figures "
            "WHERE figured_at >= $1",
            since,
        )
        if row["unknown"]:
            return None
        return row["lo"], row["hi"]

    async def moved(self, earlier: datetime, later: datetime) -> list[str]:
        """The members (as their facts name them) whose figures may differ between the windows
        ending at `earlier` and at `later`, in the order of their lock keys."""
        conn = await self._conn()
        rows = await conn.fetch(_MOVED, year_before(earlier), year_before(later), earlier, later)
        return [r["member_id"] for r in rows]

    async def recompute_keeping(
        self,
        member_ids: list[str],
        start: datetime,
        end: datetime,
        currency: str,
        since: datetime,
        chunk: int = 250,
    ) -> list[str]:
        """As `recompute`, `chunk` members a statement, in the refresh's transaction: rows
        recomputed since `since` (by events, newer) kept. The members whose rows it wrote.

        Each chunk's members are locked for its statement only (session locks, released after
        it: tens of thousands of members' locks held to the commit would overflow the lock
        table), and only those free: a member whose recompute is in flight is that
        recompute's (its row, figured after `since`, is newer than this one could be). A
        recompute of a member after its chunk reads every fact (this adds none) and, waiting
        for this transaction's row, overwrites it."""
        if not member_ids:
            return []
        conn = await self._conn()
        await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", TOUCH_LOCK)
        written: list[str] = []
        args = self._args(start, end, currency)
        for i in range(0, len(member_ids), chunk):
            locked = [
                r["m"]
                for r in await conn.fetch(
                    "SELECT m FROM unnest($2::text[]) AS m "
                    "WHERE pg_try_advisory_lock($1, hashtext(m))",
                    MEMBER_LOCK,
                    member_ids[i : i + chunk],
                )
            ]
            try:
                if locked:
                    rows = await conn.fetch(_RECOMPUTE_KEEPING, *args, locked, since)
                    written += [r["member_id"] for r in rows]
                    await conn.execute(_FORGET, locked)
            finally:
                await conn.execute(
                    "SELECT pg_advisory_unlock($1, hashtext(m)) FROM unnest($2::text[]) AS m",
                    MEMBER_LOCK,
                    locked,
                )
        return written

    async def rescore(
        self,
        as_of: datetime,
        currency: str,
        since: datetime,
        refresh_id: int,
        recomputed: list[str],
    ) -> tuple[CutPoints, int, int, int]:
        """Every row re-ranked as of `as_of` from the rows (and the erased members' facts);
        the rows whose recency or scores moved written, scored by `refresh_id`, but rows
        recomputed since `since` by others. (Cut points, members with figures, rows written,
        rows removed.)"""
        conn = await self._conn()
        await conn.execute(f"SET LOCAL work_mem = '{STAGE_WORK_MEM}'")
        erased = [r["member_id"] for r in await conn.fetch("SELECT member_id FROM erased_members")]
        await conn.execute(_GHOSTS, *self._args(year_before(as_of), as_of, currency), erased)
        await conn.execute(_RESCORE, as_of, *self._args(as_of, as_of, currency)[5:], recomputed)
        await conn.execute("ANALYZE rescored")
        cuts = await self._cuts("rescored")
        written = await conn.execute(_RESCORE_WRITE, refresh_id, as_of, since)
        removed = await conn.execute(_REMOVE_GONE, since)
        members = await conn.fetchval(
            "SELECT count(*) FROM member_figures WHERE figured_at IS NOT NULL"
        )
        return cuts, int(members), int(written.split()[-1]), int(removed.split()[-1])

    async def any_facts(self) -> bool:
        conn = await self._conn()
        return bool(
            await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM registrations) OR EXISTS (SELECT 1 FROM activity)"
            )
        )

    # --- what the dashboards read ---------------------------------------------------------------

    async def _counts(self, figure: str) -> dict[str, int]:
        """`figure_counts` of one figure: each key's members (its slots summed), zeros left
        out."""
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT key, sum(members) AS members FROM figure_counts WHERE figure = $1 "
            "GROUP BY key HAVING sum(members) <> 0",
            figure,
        )
        return {r["key"]: int(r["members"]) for r in rows}

    async def segment_counts(self) -> dict[str, int]:
        """Members by RFM segment (the stored counts, kept as the rows are written)."""
        return await self._counts("segment")

    async def rfm_cells(self) -> list[RfmCell]:
        """The members with figures by (recency score, frequency score), their spend in the
        12 months summed: one grouped read of the table (the rows the segment counts count)."""
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT rfm_r AS r, rfm_f AS f, count(*) AS members, sum(spend_12m) AS monetary "
            "FROM member_figures WHERE rfm_segment IS NOT NULL GROUP BY 1, 2"
        )
        return [
            RfmCell(int(r["r"]), int(r["f"]), int(r["members"]), Decimal(r["monetary"]))
            for r in rows
        ]

    async def multi_unit_counts(self, unit: str) -> tuple[int, int]:
        """(Members active in the trailing 12 months, of them active in two or more units);
        with `unit`, of the members active there."""
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT figure, sum(members) AS members FROM figure_counts "
            "WHERE (figure = 'active' AND key = '' AND $1 = '') OR (figure = 'multi' AND key = $1) "
            "OR (figure = 'pair' AND key = $1 || ' ' || $1) GROUP BY figure",
            unit,
        )
        found = {r["figure"]: int(r["members"]) for r in rows}
        return found.get("pair" if unit else "active", 0), found.get("multi", 0)

    async def overlap_counts(self) -> list[tuple[str, str, int]]:
        """Members active in both units of each ordered pair in the trailing 12 months."""
        found = await self._counts("pair")
        return sorted((*key.split(" ", 1), n) for key, n in found.items())  # type: ignore[misc]

    async def counted(self) -> dict[tuple[str, str], int]:
        """Every stored count by (figure, key), zeros left out (for checks)."""
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT figure, key, sum(members) AS members FROM figure_counts "
            "GROUP BY figure, key HAVING sum(members) <> 0"
        )
        return {(r["figure"], r["key"]): int(r["members"]) for r in rows}

    async def recounted(self) -> dict[tuple[str, str], int]:
        """The same counts computed from the rows of member_figures now (for checks)."""
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT k.figure, k.key, count(*) AS members "
            "FROM member_figures m, figure_keys(m.rfm_segment, m.units_12m) k GROUP BY 1, 2"
        )
        return {(r["figure"], r["key"]): int(r["members"]) for r in rows}

    async def spend_counts(self) -> list[tuple[str, Decimal, int]]:
        """Each unit's (spend, members who bought there) in the trailing 12 months (the stored
        sums, kept as the rows are written), by unit."""
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT unit, sum(spend) AS spend, sum(members) AS members FROM spend_counts "
            "GROUP BY unit HAVING sum(spend) <> 0 OR sum(members) <> 0 ORDER BY unit"
        )
        return [(r["unit"], Decimal(r["spend"]), int(r["members"])) for r in rows]

    async def flow_counts(self) -> list[tuple[str, str, int]]:
        """Members first active in the trailing 12 months by (first unit, next other unit or
        ''), the stored counts, by units."""
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT from_unit, to_unit, sum(members) AS members FROM flow_counts "
            "GROUP BY 1, 2 HAVING sum(members) <> 0 ORDER BY 1, 2"
        )
        return [(r["from_unit"], r["to_unit"], int(r["members"])) for r in rows]

    async def segment_members(self, segment: str, after: str, limit: int) -> list[RfmScore]:
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT member_id, recency_days, visits_12m AS frequency, spend_12m AS monetary, "
            "rfm_r AS r, rfm_f AS f, rfm_m AS m "
            "FROM member_figures WHERE rfm_segment = $1 AND member_id > $2 "
            "ORDER BY member_id LIMIT $3",
            segment,
            after,
            limit,
        )
        return rfm_scores(rows)
