"""The stored month-by-month counts of the registration cohorts and the programme's health
(`month_counts`, `cohort_counts`), kept in the transaction of every event that touches members,
and the per-member rows they are counted from (`member_months`, `member_joins`).

A member's rows are computed from the facts (the same SQL as the figures' over the facts,
adapters/figures.py `_COHORT_*` and `_HEALTH_*`: a merged member's facts count for its
survivor, its cohort is its earliest registration); an event's recompute (service_layer/
refresh.py `recompute`) recomputes the rows of the members it names and of their survivors,
writes those that change and moves the counters by the difference between each changed
member's counts before and after (domain/month_counts.py), so merges, unmerges and late facts
move the counts as the figures over the facts would. An erased member's rows go and its counts
stay (aggregates keep counting erased members' facts, as the figures over the facts do); a fact
of an erased member consumed after its erasure is not counted (no rows to move the counts
from), where the figures over the facts and `rebuild` count it.

Counters are 16 slots per key (by the member ID's hash): concurrent recomputes of different
members rarely update the same row; every transaction updates them in key order, so two never
wait for each other in a circle. A recompute holds the member's advisory lock (the members'
figures' `MEMBER_LOCK`, of the members named and of their survivors): one recompute of a member
at a time.

`rebuild` recomputes every member's rows and every counter from the facts at once (the
migration's backfill does the same; a repair path)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from loyalty_kit.db import driver_connection
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_insights.adapters.figures import OWNERS, family
from loyalty_insights.adapters.member_figures import MEMBER_LOCK
from loyalty_insights.domain.cohorts import REDEEMING
from loyalty_insights.domain.crossunit import ACTIVE
from loyalty_insights.domain.month_counts import (
    MONTH_COLUMNS,
    Contribution,
    MemberJoin,
    MemberMonth,
    contribution,
    difference,
)

SLOTS = 16

_FAMILY = family("$1")

# The members named and their survivors (`target`), each with its counters' slot and whether
# it was erased.
_TARGETS = (
    _FAMILY
    + f"""
SELECT a.member_id, bool_or(a.target) AS target, hashtext(a.member_id) & {SLOTS - 1} AS slot,
       EXISTS (SELECT 1 FROM erased_members x WHERE x.member_id = a.member_id) AS erased
FROM (SELECT m AS member_id, false AS target FROM unnest($1::text[]) AS m
      UNION ALL SELECT member_id, true FROM targets) AS a
GROUP BY a.member_id ORDER BY a.member_id
"""
)

# The members' ($1) stored rows: months (false, member_id, month, unit, redeemed, NULL) and joins
# (true, member_id, unit, month, imported, first), in one read.
_STORED = """
SELECT false AS joins, member_id, month, unit, redeemed, NULL::boolean
FROM member_months WHERE member_id = ANY($1::text[])
UNION ALL
SELECT true, member_id, unit, month, imported, first
FROM member_joins WHERE member_id = ANY($1::text[])
"""

# Each family member's facts by key (a lateral look-up per member: adapters/member_figures.py
# `_family_source` says why).
_FAMILY_ACTIVITY = (
    "fam f CROSS JOIN LATERAL (SELECT * FROM activity y WHERE y.member_id = f.member_id "
    "AND y.kind = ANY($2::text[]) OFFSET 0) AS a"
)
_FAMILY_REGISTRATIONS = (
    "fam f CROSS JOIN LATERAL (SELECT * FROM registrations y WHERE y.member_id = f.member_id "
    "OFFSET 0) AS r"
)

# Every member's facts by the member they count for.
_ALL_OWNERS = (
    OWNERS
    + """, fam AS (
    SELECT x.member_id, coalesce(o.owner, x.member_id) AS owner
    FROM (SELECT member_id FROM registrations UNION SELECT member_id FROM activity) AS x
    LEFT JOIN owners o ON o.member_id = x.member_id
)"""
)
_ALL_ACTIVITY = (
    "activity a JOIN fam f ON f.member_id = a.member_id\n    WHERE a.kind = ANY($2::text[])"
)


def _months(source: str) -> str:
    """(member_id, month, unit, redeemed) of the owners' activity of the kinds $2 ($3: those
    that redeem) by unit, and of any unit ('')."""
    return f""", acts AS (
    SELECT f.owner, to_char(a.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, a.unit,
           bool_or(a.kind = ANY($3::text[])) AS redeemed
    FROM {source}
    GROUP BY 1, 2, 3
)
SELECT owner AS member_id, month, unit, redeemed FROM acts
UNION ALL
SELECT owner, month, '', bool_or(redeemed) FROM acts GROUP BY 1, 2"""


def _joins(source: str) -> str:
    """(member_id, unit, month, imported, first) of the owners' first registration at each
    unit, and anywhere (''): `first` the unit of the earliest (the earliest moment, then the
    least unit, as the cohorts over the facts choose)."""
    return f""", regs AS (
    SELECT DISTINCT ON (f.owner, r.unit) f.owner, r.unit, r.registered_at, r.imported
    FROM {source}
    ORDER BY f.owner, r.unit, r.registered_at, r.imported DESC
), firsts AS (
    SELECT DISTINCT ON (owner) owner, unit, registered_at, imported
    FROM regs ORDER BY owner, registered_at, unit
)
SELECT r.owner AS member_id, r.unit,
       to_char(r.registered_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, r.imported,
       r.unit = f.unit AS first
FROM regs r JOIN firsts f ON f.owner = r.owner
UNION ALL
SELECT owner, '', to_char(registered_at AT TIME ZONE 'UTC', 'YYYY-MM'), imported, true
FROM firsts"""


# $1 the members named, $2 the active kinds, $3 those that redeem.
_FAMILY_MONTHS = _FAMILY + _months(_FAMILY_ACTIVITY)
_FAMILY_JOINS = _FAMILY + _joins(_FAMILY_REGISTRATIONS)

_MONTH_COLUMNS = ", ".join(MONTH_COLUMNS)

# Every member's rows and every counter from the facts ($1 unused, $2 and $3 as above): the
# rows staged, counted, then kept of the members not erased.
REBUILD = (
    "TRUNCATE member_months, member_joins, month_counts, cohort_counts",
    "CREATE TEMPORARY TABLE staged_months ON COMMIT DROP AS"
    + _ALL_OWNERS
    + _months(_ALL_ACTIVITY).replace("$2", "$1").replace("$3", "$2"),
    "CREATE TEMPORARY TABLE staged_joins ON COMMIT DROP AS"
    + _ALL_OWNERS
    + _joins("registrations r JOIN fam f ON f.member_id = r.member_id"),
    f"""
INSERT INTO month_counts
    (month, unit, slot, {_MONTH_COLUMNS})
SELECT month, unit, slot, sum(active), sum(redeeming), sum(unregistered), sum(registered),
       sum(joined), sum(imported)
FROM (
    SELECT m.month, m.unit, hashtext(m.member_id) & {SLOTS - 1} AS slot, 1 AS active,
           m.redeemed::int AS redeeming,
           (j.month IS NULL OR j.month > m.month)::int AS unregistered,
           0 AS registered, 0 AS joined, 0 AS imported
    FROM staged_months m
    LEFT JOIN staged_joins j ON j.member_id = m.member_id AND j.unit = m.unit
    UNION ALL
    SELECT month, unit, hashtext(member_id) & {SLOTS - 1}, 0, 0, 0, 1, first::int,
           (first AND imported)::int
    FROM staged_joins
) AS c
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
""",
    f"""
INSERT INTO cohort_counts (cohort, month, unit, slot, active)
SELECT j.month, m.month, m.unit, hashtext(m.member_id) & {SLOTS - 1}, count(*)
FROM staged_months m
JOIN staged_joins j ON j.member_id = m.member_id AND j.unit = m.unit AND j.first
WHERE m.month >= j.month
GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
""",
    """
INSERT INTO member_months (member_id, month, unit, redeemed)
SELECT * FROM staged_months s
WHERE NOT EXISTS (SELECT 1 FROM erased_members x WHERE x.member_id = s.member_id)
""",
    """
INSERT INTO member_joins (member_id, unit, month, imported, first)
SELECT * FROM staged_joins s
WHERE NOT EXISTS (SELECT 1 FROM erased_members x WHERE x.member_id = s.member_id)
""",
)

_UPSERT_MONTHS = f"""
INSERT INTO month_counts (month, unit, slot, {_MONTH_COLUMNS})
SELECT * FROM unnest($1::text[], $2::text[], $3::smallint[], $4::bigint[], $5::bigint[],
                     $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
ORDER BY 1, 2, 3
ON CONFLICT (month, unit, slot) DO UPDATE SET
{", ".join(f"{c} = month_counts.{c} + excluded.{c}" for c in MONTH_COLUMNS)}
"""

_UPSERT_COHORTS = """
INSERT INTO cohort_counts (cohort, month, unit, slot, active)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::bigint[])
ORDER BY 1, 2, 3, 4
ON CONFLICT (cohort, month, unit, slot) DO UPDATE SET
active = cohort_counts.active + excluded.active
"""


class MonthCounts:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _conn(self) -> Any:
        return await driver_connection(self.session)

    async def recompute(self, member_ids: list[str], locked: Iterable[str] = ()) -> None:
        """The rows of the members named and of their survivors from the facts, and the
        counters moved by the difference, in this transaction; absorbed members' rows go (their
        facts count in their survivor's), erased members' rows go with their counts kept.
        `locked`: members whose lock this transaction holds already (the members' figures'
        recompute took the named members')."""
        if not member_ids:
            return
        conn = await self._conn()
        # The survivors named by the merges committed once their locks are held (a merge that
        # committed while this waited names another survivor: its lock taken too). Members
        # without merges, locked already, are their own targets: one read.
        held = set(locked)
        while True:
            found = await conn.fetch(_TARGETS, member_ids)
            targets = [r["member_id"] for r in found if r["target"]]
            affected = [r["member_id"] for r in found]
            if held.issuperset(affected):
                break
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, k) FROM (SELECT DISTINCT hashtext(m) AS k "
                "FROM unnest($2::text[]) AS m) AS keys ORDER BY k",
                MEMBER_LOCK,
                sorted(set(affected) - held),
            )
            held.update(affected)
        erased = {r["member_id"] for r in found if r["erased"]}
        slots = {r["member_id"]: int(r["slot"]) for r in found}
        stored = [tuple(r) for r in await conn.fetch(_STORED, affected)]
        old_months = [r[1:5] for r in stored if not r[0]]
        old_joins = [r[1:6] for r in stored if r[0]]
        kept = [t for t in targets if t not in erased]
        new_months = await conn.fetch(_FAMILY_MONTHS, kept, list(ACTIVE), list(REDEEMING))
        new_joins = await conn.fetch(_FAMILY_JOINS, kept)
        before, after = _rows(old_months, old_joins), _rows(new_months, new_joins)
        # Only the rows that change are written, only the members whose rows change counted.
        gone: tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]] = (set(), set())
        came: tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]] = (set(), set())
        months: Counter[tuple[str, str, int, str]] = Counter()
        cohorts: Counter[tuple[str, str, str, int]] = Counter()
        for member in affected:
            old = before.get(member, _NONE)
            new = _NONE if member in erased else after.get(member, _NONE)
            if old == new:
                continue
            for i in (0, 1):
                gone[i].update(old[i] - new[i])
                came[i].update(new[i] - old[i])
            if member in erased:
                continue  # its rows go, its counts stay
            moved = difference(_contribution(old), _contribution(new))
            slot = slots[member]
            for (month, unit, column), n in moved.months.items():
                months[month, unit, slot, column] += n
            for (cohort, month, unit), n in moved.cohorts.items():
                cohorts[cohort, month, unit, slot] += n
        if gone[0]:
            await conn.execute(
                "DELETE FROM member_months m USING unnest($1::text[], $2::text[], $3::text[]) "
                "AS k (member_id, month, unit) "
                "WHERE m.member_id = k.member_id AND m.month = k.month AND m.unit = k.unit",
                *_columns(sorted(gone[0]), 3),
            )
        if gone[1]:
            await conn.execute(
                "DELETE FROM member_joins j USING unnest($1::text[], $2::text[]) "
                "AS k (member_id, unit) WHERE j.member_id = k.member_id AND j.unit = k.unit",
                *_columns(sorted(gone[1]), 2),
            )
        if came[0]:
            await conn.execute(
                "INSERT INTO member_months (member_id, month, unit, redeemed) "
                "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::boolean[])",
                *_columns(sorted(came[0]), 4),
            )
        if came[1]:
            await conn.execute(
                "INSERT INTO member_joins (member_id, unit, month, imported, first) "
                "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::boolean[], "
                "$5::boolean[])",
                *_columns(sorted(came[1]), 5),
            )
        await self._add(months, cohorts)

    async def _add(
        self,
        months: Counter[tuple[str, str, int, str]],
        cohorts: Counter[tuple[str, str, str, int]],
    ) -> None:
        conn = await self._conn()
        rows: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0] * len(MONTH_COLUMNS))
        for (month, unit, slot, column), n in months.items():
            rows[month, unit, slot][MONTH_COLUMNS.index(column)] += n
        if rows:
            keys = sorted(rows)
            await conn.execute(
                _UPSERT_MONTHS,
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
                *([rows[k][i] for k in keys] for i in range(len(MONTH_COLUMNS))),
            )
        moved = sorted(k for k, n in cohorts.items() if n)
        if moved:
            await conn.execute(
                _UPSERT_COHORTS,
                [k[0] for k in moved],
                [k[1] for k in moved],
                [k[2] for k in moved],
                [k[3] for k in moved],
                [cohorts[k] for k in moved],
            )

    async def rebuild(self) -> None:
        """Every member's rows and every counter from the facts, in this transaction."""
        conn = await self._conn()
        await conn.execute("LOCK TABLE month_counts, cohort_counts IN EXCLUSIVE MODE")
        for statement in REBUILD:
            args = [list(ACTIVE), list(REDEEMING)] if "$1" in statement else []
            await conn.execute(statement, *args)

    # --- reads ----------------------------------------------------------------------------------

    async def health_months(
        self, unit: str, months: list[str]
    ) -> dict[str, tuple[int, int, int, int]]:
        """Each month's (members registered by its end, active, active not registered by its
        end, redeeming) at `unit` ('': the group), of the months named."""
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT month, sum(registered) AS registered, sum(active) AS active, "
            "sum(unregistered) AS unregistered, sum(redeeming) AS redeeming "
            "FROM month_counts WHERE unit = $1 AND month <= $2 GROUP BY month ORDER BY month",
            unit,
            max(months),
        )
        by_month = {r["month"]: r for r in rows}
        found: dict[str, tuple[int, int, int, int]] = {}
        registered, i = 0, 0
        for month in sorted(months):
            while i < len(rows) and rows[i]["month"] <= month:
                registered += int(rows[i]["registered"])
                i += 1
            r = by_month.get(month)
            found[month] = (
                registered,
                int(r["active"]) if r else 0,
                int(r["unregistered"]) if r else 0,
                int(r["redeeming"]) if r else 0,
            )
        return found

    async def cohort_sizes(self, unit: str, months: list[str]) -> list[tuple[str, int, int]]:
        """(cohort month, members, imported members) of the members who first joined in the
        months named (at `unit`, if one is named)."""
        rows = await (await self._conn()).fetch(
            "SELECT month, sum(joined) AS members, sum(imported) AS imported FROM month_counts "
            "WHERE unit = $1 AND month = ANY($2::text[]) GROUP BY month HAVING sum(joined) > 0",
            unit,
            months,
        )
        return [(r["month"], int(r["members"]), int(r["imported"])) for r in rows]

    async def cohort_activity(self, unit: str, months: list[str]) -> dict[tuple[str, str], int]:
        """(cohort month, month) -> the cohort's members active in the month (at `unit`)."""
        rows = await (await self._conn()).fetch(
            "SELECT cohort, month, sum(active) AS active FROM cohort_counts "
            "WHERE unit = $1 AND cohort = ANY($2::text[]) AND month = ANY($2::text[]) "
            "GROUP BY 1, 2 HAVING sum(active) > 0",
            unit,
            months,
        )
        return {(r["cohort"], r["month"]): int(r["active"]) for r in rows}


Rows = tuple[frozenset[tuple[Any, ...]], frozenset[tuple[Any, ...]]]
_NONE: Rows = (frozenset(), frozenset())


def _rows(months: list[Any], joins: list[Any]) -> dict[str, Rows]:
    """Each member's (months, joins) rows as tuples of their columns."""
    found: dict[str, tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]] = {}
    for r in months:
        found.setdefault(r[0], (set(), set()))[0].add(tuple(r))
    for r in joins:
        found.setdefault(r[0], (set(), set()))[1].add(tuple(r))
    return {m: (frozenset(a), frozenset(b)) for m, (a, b) in found.items()}


def _contribution(rows: Rows) -> Contribution:
    months, joins = rows
    return contribution(
        [MemberMonth(month, unit, redeemed) for _, month, unit, redeemed in months],
        [MemberJoin(unit, month, imported, first) for _, unit, month, imported, first in joins],
    )


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """The first `width` columns of the rows, each as a list."""
    return [[r[i] for r in rows] for i in range(width)]
