"""Facts written as events arrive (SQL on the unit of work's asyncpg connection). Each write is
idempotent: a fact already kept (a redelivery the inbox did not see, a replay) is kept once.

Buffered (`buffer()`, a consumer's batch): activity, postings and lot movements are gathered
and written by `flush()` in one statement per table for the whole batch; any other write or
read flushes them first, so statements keep the events' order (an activity released after it
was recorded in the same batch is deleted, not kept)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from loyalty_kit.db import driver_connection
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class PostingFact:
    posting_id: str
    kind: str
    unit: str
    points: int
    posted_at: datetime
    occurred_at: datetime


@dataclass(frozen=True)
class MovementFact:
    posting_id: str
    lot_id: str
    earned_unit: str
    unit: str
    points: int
    posted_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True)
class ActivityFact:
    member_id: str
    kind: str
    event_id: str
    unit: str
    occurred_at: datetime
    spend: Decimal
    currency: str


_POSTINGS = """
INSERT INTO ledger_postings (member_id, posting_id, kind, unit, points, posted_at, occurred_at)
SELECT $1::text, p.* FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[],
                                 $6::timestamptz[], $7::timestamptz[]) AS p
ON CONFLICT DO NOTHING
"""

_MOVEMENTS = """
INSERT INTO lot_movements (member_id, posting_id, lot_id, kind, posting_points, earned_unit,
                           unit, points, posted_at, expires_at)
SELECT $1::text, m.* FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
                                 $7::text[], $8::bigint[], $9::timestamptz[],
                                 $10::timestamptz[]) AS m
ON CONFLICT DO NOTHING
"""

# A batch's postings and movements, of many members (buffered writes).
_MANY_POSTINGS = """
INSERT INTO ledger_postings (member_id, posting_id, kind, unit, points, posted_at, occurred_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                     $6::timestamptz[], $7::timestamptz[])
ON CONFLICT DO NOTHING
"""

_MANY_MOVEMENTS = """
INSERT INTO lot_movements (member_id, posting_id, lot_id, kind, posting_points, earned_unit,
                           unit, points, posted_at, expires_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
                     $7::text[], $8::bigint[], $9::timestamptz[], $10::timestamptz[])
ON CONFLICT DO NOTHING
"""

_ACTIVITY = """
INSERT INTO activity (member_id, kind, event_id, unit, occurred_at, spend, currency)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                     $6::numeric[], $7::text[])
ON CONFLICT DO NOTHING
"""


class FactStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.buffering = False
        self._postings: list[tuple[str, PostingFact]] = []
        self._movements: list[tuple[str, MovementFact, str, int]] = []
        self._activity: list[ActivityFact] = []

    async def _conn(self) -> Any:
        """The connection, the buffered facts written first (any statement sees them)."""
        conn = await driver_connection(self.session)
        if self._postings or self._movements or self._activity:
            await self._flush(conn)
        return conn

    def buffer(self) -> None:
        """Activity, postings and movements gathered until `flush` (a consumer's batch)."""
        self.buffering = True

    async def flush(self) -> None:
        """The buffered facts written, one statement per table; buffering ends."""
        await self._conn()
        self.buffering = False

    async def _flush(self, conn: Any) -> None:
        postings, self._postings = self._postings, []
        movements, self._movements = self._movements, []
        activity, self._activity = self._activity, []
        if postings:
            await conn.execute(
                _MANY_POSTINGS,
                [m for m, _ in postings],
                [p.posting_id for _, p in postings],
                [p.kind for _, p in postings],
                [p.unit for _, p in postings],
                [p.points for _, p in postings],
                [p.posted_at for _, p in postings],
                [p.occurred_at for _, p in postings],
            )
        if movements:
            await conn.execute(
                _MANY_MOVEMENTS,
                [m for m, _, _, _ in movements],
                [v.posting_id for _, v, _, _ in movements],
                [v.lot_id for _, v, _, _ in movements],
                [kind for _, _, kind, _ in movements],
                [points for _, _, _, points in movements],
                [v.earned_unit for _, v, _, _ in movements],
                [v.unit for _, v, _, _ in movements],
                [v.points for _, v, _, _ in movements],
                [v.posted_at for _, v, _, _ in movements],
                [v.expires_at for _, v, _, _ in movements],
            )
        if activity:
            await self._write_activity(conn, activity)

    async def record_ledger(
        self,
        member_id: str,
        postings: Sequence[PostingFact],
        movements: Sequence[MovementFact],
    ) -> None:
        """A save of a member's points account: its postings and lot movements (each movement
        carries its posting's kind and points, as the settlement reads them)."""
        if self.buffering:
            of_posting = {p.posting_id: p for p in postings}
            if all(m.posting_id in of_posting for m in movements):
                self._postings.extend((member_id, p) for p in postings)
                self._movements.extend(
                    (member_id, m, of_posting[m.posting_id].kind, of_posting[m.posting_id].points)
                    for m in movements
                )
                return
        conn = await self._conn()
        if postings:
            await conn.execute(
                _POSTINGS,
                member_id,
                [p.posting_id for p in postings],
                [p.kind for p in postings],
                [p.unit for p in postings],
                [p.points for p in postings],
                [p.posted_at for p in postings],
                [p.occurred_at for p in postings],
            )
        if movements:
            of_posting = {p.posting_id: p for p in postings}
            missing = {m.posting_id for m in movements} - of_posting.keys()
            if missing:  # not in this event: a posting kept before (never the case today)
                rows = await conn.fetch(
                    "SELECT posting_id, kind, points FROM ledger_postings "
                    "WHERE member_id = $1 AND posting_id = ANY($2::text[])",
                    member_id,
                    sorted(missing),
                )
                kinds = {r["posting_id"]: (r["kind"], r["points"]) for r in rows}
            else:
                kinds = {}
            for p in postings:
                kinds[p.posting_id] = (p.kind, p.points)
            await conn.execute(
                _MOVEMENTS,
                member_id,
                [m.posting_id for m in movements],
                [m.lot_id for m in movements],
                [kinds.get(m.posting_id, ("", 0))[0] for m in movements],
                [kinds.get(m.posting_id, ("", 0))[1] for m in movements],
                [m.earned_unit for m in movements],
                [m.unit for m in movements],
                [m.points for m in movements],
                [m.posted_at for m in movements],
                [m.expires_at for m in movements],
            )

    async def record_activity(self, facts: Sequence[ActivityFact]) -> None:
        if not facts:
            return
        if self.buffering:
            self._activity.extend(facts)
            return
        await self._write_activity(await self._conn(), facts)

    @staticmethod
    async def _write_activity(conn: Any, facts: Sequence[ActivityFact]) -> None:
        await conn.execute(
            _ACTIVITY,
            [f.member_id for f in facts],
            [f.kind for f in facts],
            [f.event_id for f in facts],
            [f.unit for f in facts],
            [f.occurred_at for f in facts],
            [f.spend for f in facts],
            [f.currency for f in facts],
        )

    async def forget_activity(self, member_id: str, kind: str, event_id: str) -> None:
        """An activity undone (a benefit's use released)."""
        conn = await self._conn()
        await conn.execute(
            "DELETE FROM activity WHERE member_id = $1 AND kind = $2 AND event_id = $3",
            member_id,
            kind,
            event_id,
        )

    async def record_programme(
        self,
        version: int,
        effective_from: datetime,
        base_currency: str,
        point_value: Decimal,
        units: Sequence[str],
    ) -> None:
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO programmes (version, effective_from, base_currency, point_value) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            version,
            effective_from,
            base_currency,
            point_value,
        )
        await conn.execute(
            "INSERT INTO known_units (unit) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
            list(units),
        )

    async def record_registrations(
        self, rows: Sequence[tuple[str, str, datetime]], *, imported: bool
    ) -> None:
        """(member, unit, when): the first registration of a member is kept."""
        if not rows:
            return
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO registrations (member_id, unit, registered_at, imported) "
            "SELECT m, u, t, $4 FROM unnest($1::text[], $2::text[], $3::timestamptz[]) "
            "AS r(m, u, t) ON CONFLICT DO NOTHING",
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            imported,
        )

    async def record_joined(self, rows: Sequence[tuple[str, str, datetime]]) -> None:
        """(member, unit, when) an imported legacy account joined its unit's programme: the
        member's registration moves to it (and its unit) when that is earlier."""
        if not rows:
            return
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO registrations (member_id, unit, registered_at, imported) "
            "SELECT DISTINCT ON (m) m, u, t, true "
            "FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS r(m, u, t) "
            "ORDER BY m, t "
            "ON CONFLICT (member_id) DO UPDATE "
            "SET registered_at = excluded.registered_at, unit = excluded.unit "
            "WHERE excluded.registered_at < registrations.registered_at",
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
        )

    async def record_consent(
        self, member_id: str, purpose: str, granted: bool, changed_at: datetime
    ) -> None:
        """The latest change of each purpose wins, whatever order changes arrive in; an erased
        member's consents are not kept."""
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO consents (member_id, purpose, granted, changed_at) "
            "SELECT $1, $2, $3, $4 "
            "WHERE NOT EXISTS (SELECT 1 FROM erased_members WHERE member_id = $1) "
            "ON CONFLICT (member_id, purpose) DO UPDATE "
            "SET granted = excluded.granted, changed_at = excluded.changed_at "
            "WHERE consents.changed_at <= excluded.changed_at",
            member_id,
            purpose,
            granted,
            changed_at,
        )

    async def record_tier_change(
        self, member_id: str, effective_at: datetime, from_tier: str, to_tier: str, reason: str
    ) -> None:
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO tier_changes (member_id, effective_at, to_tier, reason, from_tier) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            member_id,
            effective_at,
            to_tier,
            reason,
            from_tier,
        )

    async def record_benefit_fact(
        self, member_id: str, kind: str, fact_id: str, code: str, unit: str, at: datetime
    ) -> None:
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO benefit_facts (member_id, kind, fact_id, code, unit, occurred_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            member_id,
            kind,
            fact_id,
            code,
            unit,
            at,
        )

    async def record_birthdays(self, rows: Sequence[tuple[str, int, datetime]]) -> None:
        """(member, birthday month 1-12, when): the latest change wins; an erased member's is
        not kept. A member may come several times (an import's rows of one person): the latest,
        then the last given, counts."""
        if not rows:
            return
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO birthdays (member_id, month, changed_at) "
            "SELECT DISTINCT ON (m) m, b, t "
            "FROM unnest($1::text[], $2::smallint[], $3::timestamptz[]) "
            "WITH ORDINALITY AS r(m, b, t, n) "
            "WHERE NOT EXISTS (SELECT 1 FROM erased_members x WHERE x.member_id = r.m) "
            "ORDER BY m, t DESC, n DESC "
            "ON CONFLICT (member_id) DO UPDATE SET month = excluded.month, "
            "changed_at = excluded.changed_at WHERE birthdays.changed_at <= excluded.changed_at",
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
        )

    async def forget_birthday(self, member_id: str) -> None:
        conn = await self._conn()
        await conn.execute("DELETE FROM birthdays WHERE member_id = $1", member_id)

    # --- members' tags (identity's, as MemberTagsChanged and MembersImported tell them) ----------

    async def record_tags(self, member_id: str, tags: Sequence[str]) -> None:
        """The member's tags are now `tags` (its figures row made if it has none yet); an erased
        member's row is not made again."""
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO member_figures (member_id, updated_at, tags) "
            "SELECT $1, now(), $2::text[] "
            "WHERE NOT EXISTS (SELECT 1 FROM erased_members WHERE member_id = $1) "
            "ON CONFLICT (member_id) DO UPDATE SET tags = excluded.tags, updated_at = now()",
            member_id,
            sorted(set(tags)),
        )

    async def add_tags(self, tagged: Sequence[tuple[str, Sequence[str]]]) -> None:
        """(member, tags): each member's tags with these added (an import's rows)."""
        rows = [(m, t) for m, tags in tagged for t in tags]
        if not rows:
            return
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO member_figures AS f (member_id, updated_at, tags) "
            "SELECT m, now(), array_agg(DISTINCT t ORDER BY t) "
            "FROM unnest($1::text[], $2::text[]) AS r(m, t) "
            "WHERE NOT EXISTS (SELECT 1 FROM erased_members x WHERE x.member_id = r.m) "
            "GROUP BY m "
            "ON CONFLICT (member_id) DO UPDATE SET updated_at = now(), tags = ARRAY("
            "SELECT DISTINCT u FROM unnest(f.tags || excluded.tags) AS u ORDER BY u)",
            [m for m, _ in rows],
            [t for _, t in rows],
        )

    # --- members' badges (engagement's BadgeEarned and BadgeRevoked) ----------------------------

    async def add_badge(self, member_id: str, badge: str) -> None:
        """The member holds `badge` (its figures row made if it has none yet; an erased
        member's is not made again)."""
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO member_figures AS f (member_id, updated_at, badges) "
            "SELECT $1, now(), ARRAY[$2::text] "
            "WHERE NOT EXISTS (SELECT 1 FROM erased_members WHERE member_id = $1) "
            "ON CONFLICT (member_id) DO UPDATE SET updated_at = now(), badges = ARRAY("
            "SELECT DISTINCT b FROM unnest(f.badges || excluded.badges) AS b ORDER BY b) "
            "WHERE NOT f.badges @> excluded.badges",
            member_id,
            badge,
        )

    async def move_badges(self, absorbed: str, survivor: str) -> None:
        """A merge: the survivor holds the absorbed member's badges too (as engagement moves
        them, without announcing them again); the absorbed member's row goes with its
        recompute."""
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO member_figures AS f (member_id, updated_at, badges) "
            "SELECT $2, now(), a.badges FROM member_figures a "
            "WHERE a.member_id = $1 AND cardinality(a.badges) > 0 "
            "AND NOT EXISTS (SELECT 1 FROM erased_members WHERE member_id = $2) "
            "ON CONFLICT (member_id) DO UPDATE SET updated_at = now(), badges = ARRAY("
            "SELECT DISTINCT b FROM unnest(f.badges || excluded.badges) AS b ORDER BY b) "
            "WHERE NOT f.badges @> excluded.badges",
            absorbed,
            survivor,
        )

    async def remove_badge(self, member_id: str, badge: str) -> None:
        conn = await self._conn()
        await conn.execute(
            "UPDATE member_figures SET updated_at = now(), badges = array_remove(badges, $2) "
            "WHERE member_id = $1 AND $2 = ANY(badges)",
            member_id,
            badge,
        )

    # --- journeys' entries (engagement's JourneyEntered) ------------------------------------------

    async def record_journey_entry(
        self, journey_id: str, member_id: str, entered_at: datetime, control: bool, unit: str
    ) -> None:
        """A member's entry into a journey; a member counts once a journey, from its first
        entry (a later one, or the same again, changes nothing)."""
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO journey_entries (member_id, journey_id, entered_at, control, unit) "
            "VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (member_id, journey_id) DO UPDATE SET entered_at = excluded.entered_at, "
            "control = excluded.control, unit = excluded.unit "
            "WHERE excluded.entered_at < journey_entries.entered_at",
            member_id,
            journey_id,
            entered_at,
            control,
            unit,
        )

    # --- members: merges, unmerges, erasure -----------------------------------------------------

    async def record_merge(self, survivor: str, absorbed: str, at: datetime) -> None:
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO member_merges (absorbed_id, survivor_id, merged_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (absorbed_id) DO UPDATE SET survivor_id = excluded.survivor_id, "
            "merged_at = excluded.merged_at",
            absorbed,
            survivor,
            at,
        )

    async def forget_merge(self, survivor: str, restored: str) -> None:
        conn = await self._conn()
        await conn.execute(
            "DELETE FROM member_merges WHERE absorbed_id = $1 AND survivor_id = $2",
            restored,
            survivor,
        )

    async def record_erasure(self, member_id: str, at: datetime) -> None:
        """The member leaves every per-member view: its consents and birthday month go, and it
        is marked erased (its facts are IDs, units, points and amounts; aggregates keep counting
        them)."""
        conn = await self._conn()
        await conn.execute(
            "INSERT INTO erased_members (member_id, erased_at) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING",
            member_id,
            at,
        )
        await conn.execute("DELETE FROM consents WHERE member_id = $1", member_id)
        await conn.execute("DELETE FROM birthdays WHERE member_id = $1", member_id)
