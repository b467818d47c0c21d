"""Segments and their members in the database. A segment's members are evaluated by one
statement: the members whose `member_figures` row meets the compiled rule, compared with those
stored; the difference enters (inserted) and leaves (deleted), and the statement answers who
did, for the events. Evaluating twice changes nothing the second time (idempotent), which is
what lets the incremental evaluation read a few seconds of figures again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.protobuf.message import Message
from loyalty.insights.v1 import events_pb2
from loyalty_kit.timestamps import timestamp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_insights.domain.segments import Predicate, Rule, rule_from_json, rule_to_json


@dataclass(frozen=True)
class StoredSegment:
    segment_id: str
    display_name: str
    rule: Rule
    targeting: bool
    unit: str
    member_count: int
    version: int
    created_at: datetime
    updated_at: datetime
    evaluated_at: datetime


@dataclass(frozen=True)
class Changes:
    entered: list[str]
    left: list[str]


_COLUMNS = (
    "segment_id, display_name, rule, targeting, unit, member_count, version, created_at, "
    "updated_at, evaluated_at"
)


def _segment(row: Any) -> StoredSegment:
    m = row._mapping
    return StoredSegment(
        m["segment_id"],
        m["display_name"],
        rule_from_json(m["rule"]),
        m["targeting"],
        m["unit"],
        m["member_count"],
        m["version"],
        m["created_at"],
        m["updated_at"],
        m["evaluated_at"],
    )


class SegmentStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, segment: StoredSegment) -> None:
        await self.session.execute(
            text(
                f"INSERT INTO segments ({_COLUMNS}) VALUES (:segment_id, :display_name, "
                "CAST(:rule AS jsonb), :targeting, :unit, :member_count, :version, :created_at, "
                ":updated_at, :evaluated_at)"
            ),
            _params(segment),
        )

    async def save(self, segment: StoredSegment) -> None:
        await self.session.execute(
            text(
                "UPDATE segments SET display_name = :display_name, rule = CAST(:rule AS jsonb), "
                "targeting = :targeting, member_count = :member_count, version = :version, "
                "updated_at = :updated_at, evaluated_at = :evaluated_at "
                "WHERE segment_id = :segment_id"
            ),
            _params(segment),
        )

    async def get(self, segment_id: str, *, for_update: bool = False) -> StoredSegment | None:
        lock = " FOR UPDATE" if for_update else ""
        row = (
            await self.session.execute(
                text(f"SELECT {_COLUMNS} FROM segments WHERE segment_id = :id{lock}"),
                {"id": segment_id},
            )
        ).first()
        return _segment(row) if row else None

    async def page(self, unit: str | None, after: str, limit: int) -> list[StoredSegment]:
        """Segments by ID after `after`: every unit's (`unit` None) or one unit's."""
        rows = await self.session.execute(
            text(
                f"SELECT {_COLUMNS} FROM segments WHERE segment_id > :after "
                "AND (CAST(:unit AS text) IS NULL OR unit = :unit) "
                "ORDER BY segment_id LIMIT :limit"
            ),
            {"after": after, "unit": unit, "limit": limit},
        )
        return [_segment(r) for r in rows]

    async def of_member(
        self, member_id: str, unit: str | None, after: str, limit: int
    ) -> list[StoredSegment]:
        """The segments the member is in now, by ID after `after`: every unit's (`unit` None)
        or one unit's."""
        rows = await self.session.execute(
            text(
                f"SELECT {_COLUMNS} FROM segments WHERE segment_id IN "
                "(SELECT segment_id FROM segment_members WHERE member_id = :member) "
                "AND segment_id > :after AND (CAST(:unit AS text) IS NULL OR unit = :unit) "
                "ORDER BY segment_id LIMIT :limit"
            ),
            {"member": member_id, "after": after, "unit": unit, "limit": limit},
        )
        return [_segment(r) for r in rows]

    async def all_ids(self) -> list[str]:
        rows = await self.session.execute(text("SELECT segment_id FROM segments ORDER BY 1"))
        return [r[0] for r in rows]

    async def delete(self, segment_id: str) -> list[str]:
        """Delete the segment; its members were these."""
        rows = await self.session.execute(
            text("DELETE FROM segment_members WHERE segment_id = :id RETURNING member_id"),
            {"id": segment_id},
        )
        members = sorted(r[0] for r in rows)
        await self.session.execute(
            text("DELETE FROM segments WHERE segment_id = :id"), {"id": segment_id}
        )
        return members

    async def count(self, predicate: Predicate) -> int:
        """Members meeting the predicate now (nothing stored)."""
        found = await self.session.execute(
            text(f"SELECT count(*) FROM member_figures WHERE {predicate.sql}"), predicate.params
        )
        return int(found.scalar_one())

    async def evaluate(
        self, segment_id: str, predicate: Predicate, members: Sequence[str] | None = None
    ) -> Changes:
        """Bring the segment's stored members in line with the predicate: every member
        (`members` None) or only those given (the incremental evaluation; a member given
        without a figures row, erased or absorbed, leaves)."""
        only = "" if members is None else " AND member_id = ANY(CAST(:only AS text[]))"
        only_stored = "" if members is None else " AND s.member_id = ANY(CAST(:only AS text[]))"
        params = dict(predicate.params, segment_id=segment_id)
        if members is not None:
            params["only"] = list(members)
        rows = await self.session.execute(
            text(
                f"""
                WITH wanted AS (
                    SELECT member_id FROM member_figures WHERE {predicate.sql}{only}
                ), entered AS (
                    INSERT INTO segment_members (member_id, segment_id)
                    SELECT member_id, :segment_id FROM wanted
                    ON CONFLICT DO NOTHING
                    RETURNING member_id
                ), gone AS (
                    DELETE FROM segment_members s
                    WHERE s.segment_id = :segment_id{only_stored}
                      AND NOT EXISTS (SELECT 1 FROM wanted w WHERE w.member_id = s.member_id)
                    RETURNING s.member_id
                )
                SELECT true, member_id FROM entered
                UNION ALL
                SELECT false, member_id FROM gone
                """
            ),
            params,
        )
        entered: list[str] = []
        left: list[str] = []
        for has_entered, member_id in rows:
            (entered if has_entered else left).append(member_id)
        return Changes(sorted(entered), sorted(left))

    async def member_count(self, segment_id: str) -> int:
        found = await self.session.execute(
            text("SELECT count(*) FROM segment_members WHERE segment_id = :id"),
            {"id": segment_id},
        )
        return int(found.scalar_one())

    async def set_count(self, segment_id: str, *, evaluated_at: datetime) -> None:
        """Store the segment's member count, counted, and when it was evaluated in full."""
        await self.session.execute(
            text(
                "UPDATE segments SET member_count = (SELECT count(*) FROM segment_members m "
                "WHERE m.segment_id = :id), evaluated_at = :at "
                "WHERE segment_id = :id"
            ),
            {"id": segment_id, "at": evaluated_at},
        )

    async def add_to_count(self, segment_id: str, difference: int) -> None:
        await self.session.execute(
            text("UPDATE segments SET member_count = member_count + :d WHERE segment_id = :id"),
            {"id": segment_id, "d": difference},
        )

    async def members(self, segment_id: str, after: str, limit: int) -> list[str]:
        rows = await self.session.execute(
            text(
                "SELECT member_id FROM segment_members WHERE segment_id = :id "
                "AND member_id > :after ORDER BY member_id LIMIT :limit"
            ),
            {"id": segment_id, "after": after, "limit": limit},
        )
        return [r[0] for r in rows]

    async def changed_figures(
        self, since: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[tuple[datetime, str]]:
        """Members whose figures were recomputed at or after `since`, by (updated_at,
        member_id) after `after` (the keyset of one round's chunks)."""
        rows = await self.session.execute(
            text(
                "SELECT updated_at, member_id FROM member_figures WHERE updated_at >= :since "
                "AND (CAST(:at AS timestamptz) IS NULL OR (updated_at, member_id) > (:at, :id)) "
                "ORDER BY updated_at, member_id LIMIT :limit"
            ),
            {
                "since": since,
                "at": after[0] if after else None,
                "id": after[1] if after else "",
                "limit": limit,
            },
        )
        return [(r[0], r[1]) for r in rows]

    async def gone_members(self) -> list[str]:
        """Members of a segment that were erased or absorbed by a merge since (they have no
        figures any more). Read from the small erasure and merge tables first."""
        rows = await self.session.execute(
            text(
                "SELECT DISTINCT s.member_id FROM segment_members s "
                "WHERE s.member_id IN (SELECT member_id FROM erased_members "
                "UNION ALL SELECT absorbed_id FROM member_merges)"
            )
        )
        return sorted(r[0] for r in rows)

    async def watermark(self, evaluator: str) -> datetime | None:
        found = await self.session.execute(
            text("SELECT updated_at FROM segment_watermarks WHERE evaluator = :e"),
            {"e": evaluator},
        )
        return found.scalar_one_or_none()

    async def set_watermark(self, evaluator: str, at: datetime) -> None:
        await self.session.execute(
            text(
                "INSERT INTO segment_watermarks (evaluator, updated_at) VALUES (:e, :at) "
                "ON CONFLICT (evaluator) DO UPDATE SET updated_at = "
                "greatest(segment_watermarks.updated_at, excluded.updated_at)"
            ),
            {"e": evaluator, "at": at},
        )


def _params(segment: StoredSegment) -> dict[str, Any]:
    return {
        "segment_id": segment.segment_id,
        "display_name": segment.display_name,
        "rule": rule_to_json(segment.rule),
        "targeting": segment.targeting,
        "unit": segment.unit,
        "member_count": segment.member_count,
        "version": segment.version,
        "created_at": segment.created_at,
        "updated_at": segment.updated_at,
        "evaluated_at": segment.evaluated_at,
    }


def segment_events(segment_id: str, changes: Changes, reason: str, now: datetime) -> list[Message]:
    """The SegmentEntered / SegmentLeft events of an evaluation."""
    name = f"segments/{segment_id}"
    at = timestamp(now)
    entered: list[Message] = [
        events_pb2.SegmentEntered(segment=name, member_id=m, occurred_at=at, reason=reason)
        for m in changes.entered
    ]
    left: list[Message] = [
        events_pb2.SegmentLeft(segment=name, member_id=m, occurred_at=at, reason=reason)
        for m in changes.left
    ]
    return entered + left
