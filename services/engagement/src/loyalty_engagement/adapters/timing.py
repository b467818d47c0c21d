"""What time-driven journeys keep: waiting entries and the timer's take of the due ones,
journeys' budgets, the sweeps' progress, members' last purchases, birthdays and expiring lots
(SQLAlchemy Core over the unit of work's session)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_engagement.adapters.journeys import StoredEntry, _entry
from loyalty_engagement.adapters.tables import (
    journey_budgets,
    journey_entries,
    journey_sweeps,
    journeys,
    member_activity,
    member_lots,
    segment_members,
)
from loyalty_engagement.domain.journeys import Budget, EntryState, JourneyState

# A swept entry's ID, from what makes it unique (as domain.journeys.entry_id does for events).
_SWEPT_ID = (
    "md5('journey:' || :journey_id || ':' || CAST(CAST(:version AS integer) AS text)"
    " || ':' || {member} || ':' || {key})::uuid::text"
)


class TimingStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- waiting entries ----------------------------------------------------------------------

    async def wait(
        self, entry_id: str, next_step: int, due_at: datetime, waiting: str, now: datetime
    ) -> None:
        await self.session.execute(
            update(journey_entries)
            .where(journey_entries.c.entry_id == entry_id)
            .values(
                state=EntryState.WAITING.value,
                next_step=next_step,
                due_at=due_at,
                waiting=waiting,
                updated_at=now,
            )
        )

    async def due(self, now: datetime, limit: int) -> list[StoredEntry]:
        """The oldest due waiting entries of active journeys, locked for this transaction;
        entries another replica's timer holds are skipped (it runs them)."""
        rows = await self.session.execute(
            select(journey_entries)
            .join(journeys, journeys.c.journey_id == journey_entries.c.journey_id)
            .where(
                journey_entries.c.state == EntryState.WAITING.value,
                journey_entries.c.due_at <= now,
                journeys.c.state == JourneyState.ACTIVE.value,
            )
            .order_by(journey_entries.c.due_at, journey_entries.c.entry_id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=journey_entries)
        )
        return [_entry(r) for r in rows]

    async def purchased(self, member_id: str, at: datetime, now: datetime) -> list[StoredEntry]:
        """The member's entries waiting for a purchase: marked purchased and due now (locked
        to the end of the transaction). A timer that took one first keeps it: this finds it
        no longer waiting."""
        rows = await self.session.execute(
            update(journey_entries)
            .where(
                journey_entries.c.member_id == member_id,
                journey_entries.c.state == EntryState.WAITING.value,
                journey_entries.c.waiting == "purchase",
                journey_entries.c.purchased_at.is_(None),
            )
            .values(purchased_at=at, due_at=now, updated_at=now)
            .returning(*journey_entries.c)
        )
        return [_entry(r) for r in rows]

    async def purchased_many(
        self, purchases: dict[str, datetime], now: datetime
    ) -> list[StoredEntry]:
        """`purchased` for several members at once (each member's purchase time given)."""
        if not purchases:
            return []
        rows = await self.session.execute(
            text(
                "UPDATE journey_entries AS e SET purchased_at = p.at, due_at = :now,"
                " updated_at = :now"
                " FROM unnest(CAST(:members AS text[]), CAST(:at AS timestamptz[]))"
                " AS p(member_id, at)"
                " WHERE e.member_id = p.member_id AND e.state = 'waiting'"
                " AND e.waiting = 'purchase' AND e.purchased_at IS NULL"
                " RETURNING e.*"
            ),
            {"members": list(purchases), "at": list(purchases.values()), "now": now},
        )
        return [_entry(r) for r in rows]

    async def journey_active(self, journey_id: str) -> bool:
        """Whether the journey is active, share locked to the end of the transaction (a pause
        waits for the entries going on; entries after it see it paused)."""
        state = (
            await self.session.execute(
                select(journeys.c.state)
                .where(journeys.c.journey_id == journey_id)
                .with_for_update(read=True)
            )
        ).scalar()
        return state == JourneyState.ACTIVE.value

    # --- budgets ------------------------------------------------------------------------------

    async def spend(self, journey_id: str, budget: Budget, points: int, coupons: int) -> bool:
        """Count `points` and `coupons` against the journey's budget if they fit (the row stays
        locked to the commit: concurrent entries wait and see what this one spent)."""
        await self.session.execute(
            insert(journey_budgets)
            .values(journey_id=journey_id, points_spent=0, coupons_spent=0)
            .on_conflict_do_nothing()
        )
        spent = await self.session.execute(
            update(journey_budgets)
            .where(
                journey_budgets.c.journey_id == journey_id,
                literal(budget.points == 0)
                | (journey_budgets.c.points_spent + points <= budget.points)
                | literal(points == 0),
                literal(budget.coupons == 0)
                | (journey_budgets.c.coupons_spent + coupons <= budget.coupons)
                | literal(coupons == 0),
            )
            .values(
                points_spent=journey_budgets.c.points_spent + points,
                coupons_spent=journey_budgets.c.coupons_spent + coupons,
            )
            .returning(journey_budgets.c.journey_id)
        )
        return spent.first() is not None

    async def refund(self, journey_id: str, points: int, coupons: int) -> None:
        await self.session.execute(
            update(journey_budgets)
            .where(journey_budgets.c.journey_id == journey_id)
            .values(
                points_spent=journey_budgets.c.points_spent - points,
                coupons_spent=journey_budgets.c.coupons_spent - coupons,
            )
        )

    async def spent(self, journey_id: str) -> tuple[int, int]:
        row = (
            await self.session.execute(
                select(journey_budgets.c.points_spent, journey_budgets.c.coupons_spent).where(
                    journey_budgets.c.journey_id == journey_id
                )
            )
        ).first()
        return (int(row.points_spent), int(row.coupons_spent)) if row else (0, 0)

    # --- members' activity, birthdays and lots ------------------------------------------------

    async def record_purchase(self, member_id: str, at: datetime) -> None:
        statement = insert(member_activity).values(member_id=member_id, last_purchase_at=at)
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[member_activity.c.member_id],
                set_={
                    "last_purchase_at": func.greatest(
                        member_activity.c.last_purchase_at, statement.excluded.last_purchase_at
                    )
                },
            )
        )

    async def record_purchases(self, purchases: dict[str, datetime]) -> None:
        """Several members' last purchases in one statement (one time per member)."""
        if not purchases:
            return
        await self.session.execute(
            text(
                "INSERT INTO member_activity (member_id, last_purchase_at)"
                " SELECT * FROM unnest(CAST(:members AS text[]), CAST(:at AS timestamptz[]))"
                " ON CONFLICT (member_id) DO UPDATE SET last_purchase_at ="
                " greatest(member_activity.last_purchase_at, excluded.last_purchase_at)"
            ),
            {"members": list(purchases), "at": list(purchases.values())},
        )

    async def set_birthday(self, member_id: str, month: int, day: int) -> None:
        statement = insert(member_activity).values(
            member_id=member_id, birthday_month=month, birthday_day=day
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[member_activity.c.member_id],
                set_={"birthday_month": month, "birthday_day": day},
            )
        )

    async def set_time_zone(self, member_id: str, zone: str) -> None:
        statement = insert(member_activity).values(member_id=member_id, time_zone=zone)
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[member_activity.c.member_id], set_={"time_zone": zone}
            )
        )

    async def time_zone(self, member_id: str) -> str:
        """The member's IANA zone ("" when identity has none on file)."""
        found = (
            await self.session.execute(
                select(member_activity.c.time_zone).where(member_activity.c.member_id == member_id)
            )
        ).scalar()
        return str(found or "")

    async def move_segment(self, segment: str, member_id: str, present: bool, at: datetime) -> None:
        """The member entered (`present`) or left the segment at `at`; a move older than the
        one kept (a replay, a late redelivery) changes nothing."""
        statement = insert(segment_members).values(
            segment=segment, member_id=member_id, present=present, changed_at=at
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[segment_members.c.segment, segment_members.c.member_id],
                set_={"present": present, "changed_at": at},
                where=segment_members.c.changed_at <= at,
            )
        )

    async def move_lot(
        self, lot_id: str, member_id: str, points: int, expires_at: datetime
    ) -> None:
        statement = insert(member_lots).values(
            lot_id=lot_id, member_id=member_id, points=points, expires_at=expires_at
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[member_lots.c.lot_id],
                set_={"points": member_lots.c.points + statement.excluded.points},
            )
        )

    async def move_lots(self, movements: Sequence[tuple[str, str, int, datetime]]) -> None:
        """`move_lot` of several (lot, member, points, expiry) in order, in one statement: a lot
        moved more than once keeps its first member and expiry and adds up its points."""
        lots: dict[str, tuple[str, int, datetime]] = {}
        for lot_id, member_id, points, expires_at in movements:
            found = lots.get(lot_id)
            lots[lot_id] = (
                (found[0], found[1] + points, found[2])
                if found
                else (member_id, points, expires_at)
            )
        if not lots:
            return
        await self.session.execute(
            text(
                "INSERT INTO member_lots (lot_id, member_id, points, expires_at)"
                " SELECT * FROM unnest(CAST(:lots AS text[]), CAST(:members AS text[]),"
                " CAST(:points AS bigint[]), CAST(:expires AS timestamptz[]))"
                " ON CONFLICT (lot_id) DO UPDATE SET points = member_lots.points + excluded.points"
            ),
            {
                "lots": list(lots),
                "members": [m for m, _, _ in lots.values()],
                "points": [p for _, p, _ in lots.values()],
                "expires": [e for _, _, e in lots.values()],
            },
        )

    async def forget(self, member_id: str, now: datetime) -> None:
        """An erased member: no last purchase, birthday or lots kept, and entries still waiting
        go no further (skipped)."""
        await self.session.execute(
            update(journey_entries)
            .where(
                journey_entries.c.member_id == member_id,
                journey_entries.c.state == EntryState.WAITING.value,
            )
            .values(state=EntryState.SKIPPED.value, updated_at=now)
        )
        await self.session.execute(
            member_activity.delete().where(member_activity.c.member_id == member_id)
        )
        await self.session.execute(member_lots.delete().where(member_lots.c.member_id == member_id))
        await self.session.execute(
            segment_members.delete().where(segment_members.c.member_id == member_id)
        )

    # --- sweeps -------------------------------------------------------------------------------

    async def swept_until(self, journey_id: str, first: datetime) -> datetime:
        """How far the journey's sweep has gone (`first` the first time), locked: one replica
        sweeps a journey at a time."""
        await self.session.execute(
            insert(journey_sweeps)
            .values(journey_id=journey_id, swept_until=first)
            .on_conflict_do_nothing()
        )
        found = (
            await self.session.execute(
                select(journey_sweeps.c.swept_until)
                .where(journey_sweeps.c.journey_id == journey_id)
                .with_for_update()
            )
        ).scalar_one()
        return found  # type: ignore[no-any-return]

    async def set_swept(self, journey_id: str, until: datetime) -> None:
        await self.session.execute(
            update(journey_sweeps)
            .where(journey_sweeps.c.journey_id == journey_id)
            .values(swept_until=until)
        )

    async def _enter_swept(self, select_sql: str, params: dict[str, object]) -> int:
        """Insert the entries a sweep's SELECT names (member_id, trigger_key), due now for the
        timer to admit; one already made (the same spell, year, expiry) is passed over."""
        entry_id = _SWEPT_ID.format(member="m.member_id", key="m.trigger_key")
        result = await self.session.execute(
            text(
                f"""
                INSERT INTO journey_entries (entry_id, journey_id, version, member_id,
                    trigger_key, unit, state, entered_at, updated_at, next_step, due_at, waiting)
                SELECT {entry_id}, :journey_id, CAST(:version AS integer), m.member_id,
                    m.trigger_key, '', 'waiting', :now, :now, 0, :now, 'admit'
                FROM ({select_sql}) AS m
                ON CONFLICT DO NOTHING
                """
            ),
            params,
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def enter_inactive(
        self, journey_id: str, version: int, since: datetime, until: datetime, now: datetime
    ) -> int:
        """Members whose last purchase fell in (since, until]: one entry per spell (the spell
        is named by the purchase that began it)."""
        return await self._enter_swept(
            """
            SELECT member_id,
                   'inactive:' || (extract(epoch FROM last_purchase_at) * 1000000)::bigint
                       AS trigger_key
            FROM member_activity
            WHERE last_purchase_at > :since AND last_purchase_at <= :until
            """,
            {
                "journey_id": journey_id,
                "version": version,
                "since": since,
                "until": until,
                "now": now,
            },
        )

    async def enter_birthdays(
        self, journey_id: str, version: int, days: list[tuple[int, int]], year: int, now: datetime
    ) -> int:
        entered = 0
        for month, day in days:
            entered += await self._enter_swept(
                """
                SELECT member_id, 'birthday:' || :year AS trigger_key
                FROM member_activity
                WHERE birthday_month = :month AND birthday_day = :day
                """,
                {
                    "journey_id": journey_id,
                    "version": version,
                    "month": month,
                    "day": day,
                    "year": str(year),
                    "now": now,
                },
            )
        return entered

    async def enter_expiring(
        self, journey_id: str, version: int, since: datetime, until: datetime, now: datetime
    ) -> int:
        """Members with points of a lot expiring in (since, until]: one entry per member and
        expiry moment."""
        return await self._enter_swept(
            """
            SELECT DISTINCT member_id,
                   'expiring:' || (extract(epoch FROM expires_at) * 1000000)::bigint
                       AS trigger_key
            FROM member_lots
            WHERE points > 0 AND expires_at > :since AND expires_at <= :until
            """,
            {
                "journey_id": journey_id,
                "version": version,
                "since": since,
                "until": until,
                "now": now,
            },
        )

    async def enter_scheduled(
        self, journey_id: str, version: int, segment: str, occurrence: datetime, now: datetime
    ) -> int:
        """Every member in the segment now: one entry per member and occurrence."""
        return await self._enter_swept(
            """
            SELECT member_id, 'schedule:' || :occurrence AS trigger_key
            FROM segment_members
            WHERE segment = :segment AND present
            """,
            {
                "journey_id": journey_id,
                "version": version,
                "segment": segment,
                "occurrence": occurrence.isoformat(),
                "now": now,
            },
        )

    async def swept_journeys(self, kinds: list[str]) -> list[tuple[str, int, datetime]]:
        """Active and paused journeys (id, version, created) whose trigger is swept."""
        rows = await self.session.execute(
            select(journeys.c.journey_id, journeys.c.version, journeys.c.created_at).where(
                and_(
                    journeys.c.trigger_kind.in_(kinds),
                    journeys.c.state.in_([JourneyState.ACTIVE.value, JourneyState.PAUSED.value]),
                )
            )
        )
        return [(r.journey_id, r.version, r.created_at) for r in rows]
