"""Recorded activities in PostgreSQL: claimed once per (unit, activity ID) with their outcome,
and the awards a limit counts."""

from __future__ import annotations

import json
from typing import Any

from loyalty_kit.db import driver_connection
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_points.domain.activities import Count, RecordedActivity

_COLUMNS = (
    "unit, activity_id, member_id, activity_type, occurred_at, attributes, fingerprint, "
    'recorded_at, programme_version, points, funding_unit, posting_id, limit_reason, "limit"'
)


# The member and every member merged into it (along chains of merges): one person's activities
# count towards its limits whichever of its ids recorded them.
_ABSORBED = """
WITH RECURSIVE held(member_id) AS (
    SELECT $1::uuid
    UNION
    SELECT a.member_id FROM accounts a JOIN held h ON a.merged_into = h.member_id
)
"""


class ActivityRows:
    session: AsyncSession

    async def activity(self, unit: str, activity_id: str) -> RecordedActivity | None:
        conn = await driver_connection(self.session)
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM activities WHERE unit = $1 AND activity_id = $2",
            unit,
            activity_id,
        )
        return _activity_of(row) if row is not None else None

    async def claim_activity(self, activity: RecordedActivity) -> bool:
        """Record the activity with its outcome; False if the unit's activity ID is taken (one
        statement checks and claims: a concurrent duplicate waits for the first to end)."""
        conn = await driver_connection(self.session)
        claimed = await conn.fetchval(
            f"INSERT INTO activities ({_COLUMNS}) VALUES "
            "($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12, $13, $14) "
            "ON CONFLICT DO NOTHING RETURNING true",
            activity.unit,
            activity.activity_id,
            activity.member_id,
            activity.activity_type,
            activity.occurred_at,
            json.dumps(activity.attributes),
            activity.fingerprint,
            activity.recorded_at,
            activity.programme_version,
            activity.points,
            activity.funding_unit,
            activity.posting_id or None,
            activity.limit_reason,
            activity.limit,
        )
        return bool(claimed)

    async def count_awarded(self, member_id: str, count: Count) -> int:
        """The member's activities of the type that awarded points within the count's window
        (at its unit, with its attribute value, when it names them), those recorded under the
        ids of members merged into it included."""
        sql = _ABSORBED + (
            "SELECT count(*) FROM activities WHERE member_id IN (SELECT member_id FROM held) "
            "AND activity_type = $2 AND points > 0"
        )
        args: list[Any] = [member_id, count.activity_type]
        if count.start is not None and count.end is not None:
            sql += f" AND occurred_at >= ${len(args) + 1} AND occurred_at < ${len(args) + 2}"
            args += [count.start, count.end]
        if count.unit is not None:
            sql += f" AND unit = ${len(args) + 1}"
            args.append(count.unit)
        if count.attribute is not None:
            sql += f" AND attributes ->> ${len(args) + 1} = ${len(args) + 2}"
            args += list(count.attribute)
        conn = await driver_connection(self.session)
        return int(await conn.fetchval(sql, *args))


def _activity_of(row: Any) -> RecordedActivity:
    attributes = row["attributes"]  # decoded by the engine's codec on its connections
    return RecordedActivity(
        member_id=str(row["member_id"]),
        unit=row["unit"],
        activity_type=row["activity_type"],
        activity_id=row["activity_id"],
        occurred_at=row["occurred_at"],
        attributes=dict(json.loads(attributes) if isinstance(attributes, str) else attributes),
        fingerprint=row["fingerprint"],
        recorded_at=row["recorded_at"],
        programme_version=row["programme_version"],
        points=row["points"],
        funding_unit=row["funding_unit"],
        posting_id=str(row["posting_id"]) if row["posting_id"] else "",
        limit_reason=row["limit_reason"],
        limit=row["limit"],
    )
