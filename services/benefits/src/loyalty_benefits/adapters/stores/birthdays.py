"""Members' birthdays (month and day, from identity's ProfileChanged and MembersImported) for
the birthday gifts."""

from __future__ import annotations

from loyalty_benefits.adapters.stores.base import Store


class Birthdays(Store):
    async def save(self, member_id: str, month: int, day: int) -> None:
        conn = await self.conn()
        if not month or not day:
            await self.forget(member_id)
            return
        await conn.execute(
            "INSERT INTO member_birthdays (member_id, month, day) VALUES ($1, $2, $3) "
            "ON CONFLICT (member_id) DO UPDATE SET month = EXCLUDED.month, day = EXCLUDED.day",
            member_id,
            month,
            day,
        )

    async def save_many(self, birthdays: list[tuple[str, int, int]]) -> None:
        """(member_id, month, day) of many members, one statement (a chunk of an import)."""
        if not birthdays:
            return
        conn = await self.conn()
        await conn.execute(
            "INSERT INTO member_birthdays (member_id, month, day) "
            "SELECT * FROM unnest($1::uuid[], $2::smallint[], $3::smallint[]) "
            "ON CONFLICT (member_id) DO UPDATE SET month = EXCLUDED.month, day = EXCLUDED.day",
            [m for m, _, _ in birthdays],
            [month for _, month, _ in birthdays],
            [day for _, _, day in birthdays],
        )

    async def forget(self, member_id: str) -> None:
        conn = await self.conn()
        await conn.execute("DELETE FROM member_birthdays WHERE member_id = $1", member_id)

    async def celebrating(
        self, days: list[tuple[int, int]], after: str | None, limit: int
    ) -> list[tuple[str, str | None]]:
        """(member_id, tier or None) of members born on one of `days`, by member id after
        `after`."""
        conn = await self.conn()
        rows = await conn.fetch(
            "SELECT b.member_id, t.tier FROM member_birthdays b "
            "LEFT JOIN member_tiers t ON t.member_id = b.member_id "
            f"WHERE {_BORN_ON_AFTER} ORDER BY b.member_id LIMIT $4",
            [m for m, _ in days],
            [d for _, d in days],
            after,
            limit,
        )
        return [(str(r["member_id"]), r["tier"]) for r in rows]

    async def count_celebrating(self, days: list[tuple[int, int]], after: str | None) -> int:
        """How many `celebrating` would walk from `after` on: one query over the index
        `member_birthdays_by_day`."""
        conn = await self.conn()
        found = await conn.fetchval(
            f"SELECT count(*) FROM member_birthdays b WHERE {_BORN_ON_AFTER}",
            [m for m, _ in days],
            [d for _, d in days],
            after,
        )
        return int(found)


# Born on one of the days ($1 months, $2 days), member id after $3 (NULL: from the first).
_BORN_ON_AFTER = (
    "(b.month, b.day) IN (SELECT * FROM unnest($1::smallint[], $2::smallint[])) "
    "AND ($3::uuid IS NULL OR b.member_id > $3)"
)
