"""Tiers in PostgreSQL (SQL on the asyncpg connection of the unit of work's transaction).

Members' tiers come back as `MemberTier` aggregates with their grants not yet ended; `save`
stores what an aggregate changed (row, grants, membership orders, history) and keeps its
events for the unit of work to publish at commit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from loyalty_kit.db import driver_connection
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_tiers.adapters.imports import ImportRows
from loyalty_tiers.adapters.rows import (
    GRANT_COLUMNS,
    MEMBER_COLUMNS,
    from_snapshot,
    grant_of,
    member_of,
    snapshot,
    totals_of,
)
from loyalty_tiers.domain.events import TierChanged
from loyalty_tiers.domain.grants import Grant, MembershipOrder
from loyalty_tiers.domain.ladder import Ladder, Totals, ladder_from_json, ladder_to_json
from loyalty_tiers.domain.member_tier import HistoryEntry, MemberTier

# A posting's activity; an earn's order ($9, '' for a reversal) claimed with it, its spend and
# visit recorded only when the claim is new ($10-$12: the totals when the order was counted).
_RECORD_ACTIVITY = """
WITH claim AS (
    INSERT INTO activity_orders (unit, order_id, event_id)
    SELECT $4::text, $9::text, $2::text WHERE $9::text <> ''
    ON CONFLICT (unit, order_id) DO NOTHING
    RETURNING true AS new
), counted AS (
    SELECT $9::text <> '' AND NOT EXISTS (SELECT 1 FROM claim) AS before
)
INSERT INTO activity (member_id, event_id, occurred_at, unit, spend, points, visits,
                      origin_member_id)
SELECT $1::uuid, $2::text, $3::timestamptz, $4::text,
       CASE WHEN c.before THEN $10::numeric ELSE $5::numeric END,
       CASE WHEN c.before THEN $11::bigint ELSE $6::bigint END,
       CASE WHEN c.before THEN $12::integer ELSE $7::integer END,
       $8::uuid
FROM counted c
ON CONFLICT DO NOTHING
RETURNING true
"""


class LadderCache:
    """The ladder in force as last read, one per service process (and database): versions never
    change once published, so only another version is read and parsed again. The row's
    transaction stamp (`xmin`) goes with the version: a version written by a transaction that
    rolled back and then written again is never taken for the one cached. Callers treat the
    ladder as read-only."""

    def __init__(self) -> None:
        self.ladder: Ladder | None = None
        self.stamp = ""


class TierStore(ImportRows):
    def __init__(self, session: AsyncSession, cache: LadderCache | None = None) -> None:
        self.session = session
        self.cache = cache or LadderCache()
        self._events: list[TierChanged] = []

    async def _conn(self) -> Any:
        return await driver_connection(self.session)

    # -- the ladder -------------------------------------------------------------------------

    async def ladder(self) -> Ladder | None:
        """The latest version: one round trip, the rules sent only when they are not the ones
        cached (every activity event and tier preview reads them)."""
        conn = await self._conn()
        cache = self.cache
        cached = cache.ladder
        row = await conn.fetchrow(
            "SELECT version, xmin::text AS stamp,"
            " CASE WHEN version = $1 AND xmin::text = $2 THEN NULL ELSE rules END AS rules"
            " FROM ladder_versions ORDER BY version DESC LIMIT 1",
            cached.version if cached is not None else None,
            cache.stamp,
        )
        if row is None:
            return None
        if cached is not None and row["rules"] is None:
            return cached
        rules = row["rules"]  # the engine's jsonb codec may have decoded it already
        found = ladder_from_json(
            row["version"], json.loads(rules) if isinstance(rules, str) else rules
        )
        cache.ladder, cache.stamp = found, row["stamp"]
        return found

    async def add_ladder(self, ladder: Ladder) -> int:
        conn = await self._conn()
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

    # -- activity ---------------------------------------------------------------------------

    async def record_activity(
        self,
        member_id: str,
        posting_id: str,
        occurred_at: datetime,
        unit: str,
        totals: Totals,
        origin: str | None = None,
        *,
        order_id: str = "",
    ) -> bool:
        """False when the posting was counted already (the column `event_id` holds the points
        posting's id). `origin`: the absorbed member whose activity this was, when it arrives
        after the merge. An earn names its `order_id`: the order is claimed in the same
        statement, and when an import counted it before, only the earn's points are recorded
        (`Totals.order_counted_before`)."""
        conn = await self._conn()
        before = totals.order_counted_before()
        done = await conn.fetchval(
            _RECORD_ACTIVITY,
            member_id,
            posting_id,
            occurred_at,
            unit,
            totals.spend,
            totals.points,
            totals.visits,
            origin,
            order_id,
            before.spend,
            before.points,
            before.visits,
        )
        return bool(done)

    async def activity(self, member_id: str, since: datetime, until: datetime) -> dict[str, Totals]:
        """Per unit, the member's activity in [since, until]."""
        found = await self.activities([(member_id, since, until)])
        return found.get(member_id, {})

    async def activities(
        self, windows: Sequence[tuple[str, datetime, datetime]]
    ) -> dict[str, dict[str, Totals]]:
        """Per member and unit, the activity in each member's own window, in one statement."""
        if not windows:
            return {}
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT w.member_id, a.unit, sum(a.spend) AS spend, sum(a.points) AS points, "
            "sum(a.visits) AS visits "
            "FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) "
            "AS w(member_id, since, until) "
            "JOIN activity a ON a.member_id = w.member_id "
            "AND a.occurred_at >= w.since AND a.occurred_at <= w.until "
            "GROUP BY w.member_id, a.unit",
            [w[0] for w in windows],
            [w[1] for w in windows],
            [w[2] for w in windows],
        )
        return totals_of(rows)

    async def counted(self, member_id: str, posting_ids: Sequence[str]) -> set[str]:
        """Which of these postings the member's activity has counted already."""
        if not posting_ids:
            return set()
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT event_id FROM activity WHERE member_id = $1 AND event_id = ANY($2::text[])",
            member_id,
            list(posting_ids),
        )
        return {r["event_id"] for r in rows}

    # -- members' tiers ---------------------------------------------------------------------

    async def member_tier(self, member_id: str, *, lock: bool = False) -> MemberTier | None:
        conn = await self._conn()
        row = await conn.fetchrow(
            f"SELECT {MEMBER_COLUMNS} FROM member_tiers WHERE member_id = $1"
            + (" FOR UPDATE" if lock else ""),
            member_id,
        )
        return None if row is None else (await self._with_grants([member_of(row)]))[0]

    async def ensure_member(self, member_id: str, entry_tier: str, now: datetime) -> MemberTier:
        """The member's row, locked; a member first seen now gets one at the entry tier (a
        concurrent first sighting finds the row the other made)."""
        conn = await self._conn()
        row = await conn.fetchrow(
            "INSERT INTO member_tiers (member_id, tier, since, tier_year_end, effective_tier) "
            "VALUES ($1, $2, $3, NULL, $2) ON CONFLICT (member_id) "
            f"DO UPDATE SET member_id = EXCLUDED.member_id RETURNING {MEMBER_COLUMNS}",
            member_id,
            entry_tier,
            now,
        )
        return (await self._with_grants([member_of(row)]))[0]

    async def ensure_members(
        self, member_ids: Sequence[str], entry_tier: str, now: datetime
    ) -> dict[str, MemberTier]:
        """Several members' rows locked (see `lock_members`), those first seen now made at the
        entry tier: a chunk of an import in two statements."""
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO member_tiers (member_id, tier, since, tier_year_end, effective_tier) "
            "SELECT m, $2, $3, NULL, $2 FROM unnest($1::uuid[]) AS m ORDER BY m "
            "ON CONFLICT (member_id) DO NOTHING",
            sorted(set(member_ids)),
            entry_tier,
            now,
        )
        return await self.lock_members(member_ids)

    async def lock_members(self, member_ids: Sequence[str]) -> dict[str, MemberTier]:
        """Several members' rows locked, in one order (no deadlock between two lockers)."""
        conn = await self._conn()
        rows = await conn.fetch(
            f"SELECT {MEMBER_COLUMNS} FROM member_tiers WHERE member_id = ANY($1::uuid[]) "
            "ORDER BY member_id FOR UPDATE",
            list(member_ids),
        )
        members = await self._with_grants([member_of(r) for r in rows])
        return {m.member_id: m for m in members}

    async def members_due(self, as_of: datetime, limit: int) -> list[MemberTier]:
        """Members whose tier year ended by `as_of`, soonest first, locked; rows another
        replica is judging are skipped."""
        conn = await self._conn()
        rows = await conn.fetch(
            f"SELECT {MEMBER_COLUMNS} FROM member_tiers WHERE tier_year_end <= $1 "
            "ORDER BY tier_year_end LIMIT $2 FOR UPDATE SKIP LOCKED",
            as_of,
            limit,
        )
        return await self._with_grants([member_of(r) for r in rows])

    async def count_members_due(self, as_of: datetime) -> int:
        """How many `members_due` would find, locked or not: one query over the index
        `member_tiers_due`."""
        conn = await self._conn()
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM member_tiers WHERE tier_year_end <= $1", as_of
            )
        )

    async def _with_grants(self, members: list[MemberTier]) -> list[MemberTier]:
        grants = await self.active_grants([m.member_id for m in members])
        for member in members:
            member.grants = grants.get(member.member_id, [])
        return members

    async def save(self, members: Sequence[MemberTier]) -> None:
        """Store what the members' aggregates changed, a few statements for all of them; their
        events wait in `collect_events` for the unit of work's commit."""
        if not members:
            return
        await self._save_rows(members)
        await self._add_grants(
            [g for m in members for g, added in m.changed_grants.values() if added]
        )
        for member in members:
            for grant, added in member.changed_grants.values():
                if not added:
                    await self._save_grant(grant)
            for order in member.new_orders:
                await self._add_membership_order(order)
            member.changed_grants.clear()
            member.new_orders.clear()
        await self._add_history([e for m in members for e in m.new_history])
        for member in members:
            member.new_history.clear()
            self._events.extend(member.events)
            member.events.clear()

    def collect_events(self) -> list[TierChanged]:
        """The events of the members saved since the last call, in the order they happened."""
        events, self._events = self._events, []
        return events

    async def _save_rows(self, members: Sequence[MemberTier]) -> None:
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO member_tiers (member_id, tier, since, tier_year_end, effective_tier) "
            "SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], "
            "$4::timestamptz[], $5::text[]) "
            "ON CONFLICT (member_id) DO UPDATE "
            "SET tier = EXCLUDED.tier, since = EXCLUDED.since, "
            "tier_year_end = EXCLUDED.tier_year_end, effective_tier = EXCLUDED.effective_tier",
            [m.member_id for m in members],
            [m.tier for m in members],
            [m.since for m in members],
            [m.tier_year_end for m in members],
            [m.effective for m in members],
        )

    async def merged_into(self, member_id: str) -> str | None:
        """The survivor an absorbed member was merged into (None: not absorbed)."""
        conn = await self._conn()
        found = await conn.fetchval(
            "SELECT merged_into FROM merged_members WHERE member_id = $1", member_id
        )
        return None if found is None else str(found)

    async def record_merge(
        self,
        absorbed: str,
        survivor: str,
        at: datetime,
        before: tuple[MemberTier | None, MemberTier | None] = (None, None),
    ) -> None:
        """Remember the merge, with both members' tiers before it (survivor's, absorbed's);
        members absorbed into `absorbed` earlier now point at the survivor too (no chain to
        follow)."""
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO merged_members (member_id, merged_into, merged_at, survivor_before, "
            "absorbed_before) VALUES ($1, $2, $3, $4::jsonb, $5::jsonb) "
            "ON CONFLICT (member_id) DO NOTHING",
            absorbed,
            survivor,
            at,
            *(snapshot(m) for m in before),
        )
        await conn.execute(
            "UPDATE merged_members SET merged_into = $2 WHERE merged_into = $1", absorbed, survivor
        )

    async def erased(self, member_id: str) -> bool:
        conn = await self._conn()
        found = await conn.fetchval("SELECT 1 FROM erased_members WHERE member_id = $1", member_id)
        return found is not None

    async def record_erasure(self, member_id: str, at: datetime) -> None:
        """Remember the erasure (the member's row stays, with the tier as it stood: ids only,
        no personal data)."""
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO erased_members (member_id, erased_at) VALUES ($1, $2) "
            "ON CONFLICT (member_id) DO NOTHING",
            member_id,
            at,
        )

    async def move_member(self, absorbed: str, survivor: str) -> None:
        """A merge: the absorbed member's activity and grants become the survivor's, each row
        remembering whose it was (the first owner, along a chain of merges)."""
        conn = await self._conn()
        for table in ("activity", "tier_grants", "membership_orders"):
            await conn.execute(
                f"UPDATE {table} SET member_id = $2, "
                "origin_member_id = coalesce(origin_member_id, member_id) WHERE member_id = $1",
                absorbed,
                survivor,
            )
        await conn.execute("DELETE FROM member_tiers WHERE member_id = $1", absorbed)

    async def forget_merge(
        self, restored: str
    ) -> tuple[MemberTier | None, MemberTier | None] | None:
        """An unmerge: the merge's record goes; both members' tiers before it (survivor's,
        restored's), or None when no merge of `restored` is remembered."""
        conn = await self._conn()
        row = await conn.fetchrow(
            "DELETE FROM merged_members WHERE member_id = $1 "
            "RETURNING merged_into, survivor_before, absorbed_before",
            restored,
        )
        if row is None:
            return None
        return (
            from_snapshot(str(row["merged_into"]), row["survivor_before"]),
            from_snapshot(restored, row["absorbed_before"]),
        )

    async def give_back(self, survivor: str, restored: str) -> None:
        """An unmerge: the activity, grants and paid memberships that came from `restored` are
        its own again."""
        conn = await self._conn()
        for table in ("activity", "tier_grants", "membership_orders"):
            await conn.execute(
                f"UPDATE {table} SET member_id = $2, origin_member_id = NULL "
                "WHERE member_id = $1 AND origin_member_id = $2",
                survivor,
                restored,
            )

    async def distribution(self) -> dict[str, int]:
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT effective_tier, count(*) AS n FROM member_tiers t WHERE NOT EXISTS "
            "(SELECT 1 FROM erased_members e WHERE e.member_id = t.member_id) "
            "GROUP BY effective_tier"
        )
        return {r["effective_tier"]: int(r["n"]) for r in rows}

    # -- history ----------------------------------------------------------------------------

    async def _add_history(self, entries: Sequence[HistoryEntry]) -> None:
        if not entries:
            return
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO tier_history (member_id, from_tier, to_tier, reason, changed_at) "
            "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], "
            "$5::timestamptz[])",
            [e.member_id for e in entries],
            [e.from_tier for e in entries],
            [e.to_tier for e in entries],
            [e.reason for e in entries],
            [e.at for e in entries],
        )

    async def history(
        self, member_id: str, before_seq: int | None, limit: int
    ) -> list[tuple[int, HistoryEntry]]:
        """The member's history, newest first, with each entry's position (for pages)."""
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT seq, from_tier, to_tier, reason, changed_at FROM tier_history "
            "WHERE member_id = $1 AND ($2::bigint IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3",
            member_id,
            before_seq,
            limit,
        )
        return [
            (
                r["seq"],
                HistoryEntry(member_id, r["from_tier"], r["to_tier"], r["reason"], r["changed_at"]),
            )
            for r in rows
        ]

    # -- grants and paid memberships --------------------------------------------------------

    async def _add_grants(self, grants: Sequence[Grant]) -> None:
        """New grants, one statement for any number (a chunk of an import's status matches)."""
        if not grants:
            return
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO tier_grants (member_id, grant_id, kind, tier, reason, unit, starts_at, "
            "ends_at, state, end_reason) "
            "SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], "
            "$6::text[], $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[])",
            [g.member_id for g in grants],
            [g.grant_id for g in grants],
            [g.kind.value for g in grants],
            [g.tier for g in grants],
            [g.reason for g in grants],
            [g.unit for g in grants],
            [g.starts_at for g in grants],
            [g.ends_at for g in grants],
            [g.state.value for g in grants],
            [g.end_reason for g in grants],  # a grant may end in the unit of work that adds it
        )

    async def _save_grant(self, grant: Grant) -> None:
        conn = await self._conn()
        await conn.execute(
            "UPDATE tier_grants SET ends_at = $3, state = $4, end_reason = $5 "
            "WHERE member_id = $1 AND grant_id = $2",
            grant.member_id,
            grant.grant_id,
            grant.ends_at,
            grant.state.value,
            grant.end_reason,
        )

    async def grant(self, member_id: str, grant_id: str) -> Grant | None:
        conn = await self._conn()
        row = await conn.fetchrow(
            f"SELECT {GRANT_COLUMNS} FROM tier_grants g WHERE g.member_id = $1 AND g.grant_id = $2",
            member_id,
            grant_id,
        )
        return None if row is None else grant_of(row)

    async def active_grants(self, member_ids: Sequence[str]) -> dict[str, list[Grant]]:
        """The members' grants not yet ended or revoked (some may be past their end time)."""
        if not member_ids:
            return {}
        conn = await self._conn()
        rows = await conn.fetch(
            f"SELECT {GRANT_COLUMNS} FROM tier_grants g "
            "WHERE g.member_id = ANY($1::uuid[]) AND g.state = 'active'",
            list(member_ids),
        )
        found: dict[str, list[Grant]] = {}
        for row in rows:
            grant = grant_of(row)
            found.setdefault(grant.member_id, []).append(grant)
        return found

    async def list_grants(
        self, member_id: str, before: tuple[datetime, str] | None, limit: int
    ) -> list[tuple[datetime, Grant]]:
        conn = await self._conn()
        rows = await conn.fetch(
            f"SELECT {GRANT_COLUMNS} FROM tier_grants g WHERE g.member_id = $1 "
            "AND ($2::timestamptz IS NULL OR (g.created_at, g.grant_id) < ($2, $3::uuid)) "
            "ORDER BY g.created_at DESC, g.grant_id DESC LIMIT $4",
            member_id,
            before[0] if before else None,
            before[1] if before else None,
            limit,
        )
        return [(r["created_at"], grant_of(r)) for r in rows]

    async def membership_order(self, unit: str, order_id: str) -> tuple[str, str] | None:
        """(member id, grant id) of a membership order."""
        conn = await self._conn()
        row = await conn.fetchrow(
            "SELECT member_id, grant_id FROM membership_orders WHERE unit = $1 AND order_id = $2",
            unit,
            order_id,
        )
        return None if row is None else (str(row["member_id"]), str(row["grant_id"]))

    async def _add_membership_order(self, order: MembershipOrder) -> None:
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO membership_orders (unit, order_id, member_id, grant_id, months) "
            "VALUES ($1, $2, $3, $4, $5)",
            order.unit,
            order.order_id,
            order.member_id,
            order.grant_id,
            order.months,
        )

    async def grants_due(self, as_of: datetime, limit: int) -> list[str]:
        """Members with a grant in force whose end time has passed by `as_of`."""
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT DISTINCT member_id FROM ("
            "SELECT member_id FROM tier_grants WHERE state = 'active' AND ends_at <= $1 "
            "ORDER BY ends_at LIMIT $2) due",
            as_of,
            limit,
        )
        return [str(r["member_id"]) for r in rows]

    async def count_grants_due(self, as_of: datetime) -> int:
        """Grants in force whose end time has passed by `as_of`: one query over the index
        `tier_grants_due`."""
        conn = await self._conn()
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM tier_grants WHERE state = 'active' AND ends_at <= $1", as_of
            )
        )
