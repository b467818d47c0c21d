"""The ledger in PostgreSQL. Every change to a member's points happens with their account row
locked (`SELECT ... FOR UPDATE`), so concurrent calls for one member are serialised and a
balance can never be spent twice; CHECK constraints back that up.

`save(account)` writes what the aggregate recorded (postings, lots, lot movements, the
account's balances); the unit of work takes the events of every account this ledger loaded."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from loyalty_kit.db import driver_connection
from sqlalchemy import DateTime, cast, func, insert, literal, select, tuple_, update
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_points.adapters import bulk
from loyalty_points.adapters import tables as t
from loyalty_points.adapters.activities import ActivityRows
from loyalty_points.adapters.bulk import ACCOUNT_COLUMNS, account_of
from loyalty_points.adapters.programmes import ProgrammeCache, ProgrammeRows
from loyalty_points.adapters.records import RecordRows
from loyalty_points.adapters.settlement import SettlementRows
from loyalty_points.domain.account import Account
from loyalty_points.domain.events import LedgerPosted, LedgerPosting, LotMovement
from loyalty_points.domain.ledger import (
    NEVER,
    Changes,
    EarnEntry,
    Lot,
    LotRecord,
    LotStatus,
    Posting,
    PostingKind,
)

_ADD_EARN = """
WITH posting AS (
    INSERT INTO postings (member_id, posting_id, kind, points, pending, available_at, unit,
                          channel, order_id, occurred_at, posted_at, programme_version,
                          breakdown)
    VALUES ($1::uuid, $2::uuid, 'earn', $3::bigint, $4, $5::timestamptz, $6::text, $7, $8,
            $9::timestamptz, $10::timestamptz, $11, $12::jsonb)
), lot AS (
    INSERT INTO lots (member_id, lot_id, posting_id, earned_unit, points, remaining, status,
                      earned_at, available_at, expires_at)
    SELECT $1::uuid, $13::uuid, $2::uuid, $6::text, $3::bigint, $3::bigint, $14,
           $9::timestamptz, $5::timestamptz, $15::timestamptz
    WHERE $3::bigint > 0
)
INSERT INTO lot_movements (member_id, posting_id, lot_id, points, earned_unit, unit, posted_at)
SELECT $1::uuid, $2::uuid, $13::uuid, $3::bigint, $6::text, $6::text, $10::timestamptz
WHERE $3::bigint > 0
"""

_ACCOUNT = f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE member_id = $1"
_ACCOUNT_FOR_UPDATE = _ACCOUNT + " FOR UPDATE"


class SqlLedger(ProgrammeRows, RecordRows, ActivityRows, SettlementRows):
    def __init__(self, session: AsyncSession, programmes: ProgrammeCache | None = None) -> None:
        self.session = session
        self.programmes = programmes or ProgrammeCache(ttl=0)
        self.seen: list[Account] = []  # every account loaded: the unit of work takes its events

    # --- accounts -----------------------------------------------------------------------------
    async def account(self, member_id: str, *, lock: bool = False) -> Account | None:
        conn = await driver_connection(self.session)
        row = await conn.fetchrow(_ACCOUNT_FOR_UPDATE if lock else _ACCOUNT, member_id)
        if row is None:
            return None
        account = account_of(row)
        self.seen.append(account)
        return account

    async def create_account(self, account: Account, now: datetime) -> None:
        await self.session.execute(
            pg_insert(t.accounts)
            .values(
                member_id=account.member_id,
                state=account.state,
                merged_into=account.merged_into or None,
                tier=account.tier,
                tier_effective_at=account.tier_effective_at,
                available=0,
                pending=0,
                lifetime_earned=0,
                updated_at=now,
                referral_pending=False,
            )
            .on_conflict_do_nothing()
        )

    async def lock_accounts(self, member_ids: Sequence[str], now: datetime) -> dict[str, Account]:
        """Many members' accounts, made where new, locked in member order (see `bulk`)."""
        conn = await driver_connection(self.session)
        accounts = await bulk.lock_accounts(conn, member_ids, now)
        self.seen.extend(accounts)
        return {a.member_id: a for a in accounts}

    async def save_many(self, accounts: Sequence[Account], now: datetime) -> None:
        """Save many accounts: their credits in a few statements for all of them (see
        `bulk.save_credits`); an account that changed otherwise is saved on its own."""
        credits = [a for a in accounts if bulk.only_credits(a.changes)]
        for account in accounts:
            if not bulk.only_credits(account.changes):
                await self.save(account, now)
        if credits:
            await bulk.save_credits(await driver_connection(self.session), credits, now)

    # --- postings -----------------------------------------------------------------------------
    @staticmethod
    def _posting(row: Any) -> Posting:
        return Posting(
            posting_id=str(row.posting_id),
            member_id=str(row.member_id),
            kind=PostingKind(row.kind),
            points=row.points,
            unit=row.unit,
            occurred_at=row.occurred_at,
            posted_at=row.posted_at,
            channel=row.channel,
            order_id=row.order_id,
            pending=row.pending,
            available_at=row.available_at,
            programme_version=row.programme_version,
            breakdown=row.breakdown,
            related_posting_id=str(row.related_posting_id) if row.related_posting_id else None,
            reason=row.reason,
            unrecovered_points=row.unrecovered_points,
            seq=row.seq,
        )

    async def posting(self, member_id: str, posting_id: str) -> Posting | None:
        row = (
            await self.session.execute(
                select(t.postings).where(
                    t.postings.c.member_id == member_id, t.postings.c.posting_id == posting_id
                )
            )
        ).first()
        return self._posting(row) if row else None

    async def undoing(self, member_id: str, posting_id: str, kind: PostingKind) -> Posting | None:
        """The posting of `kind` that undid `posting_id` (a cancellation, a reversal), if any."""
        row = (
            await self.session.execute(
                select(t.postings).where(
                    t.postings.c.member_id == member_id,
                    t.postings.c.related_posting_id == posting_id,
                    t.postings.c.kind == kind.value,
                )
            )
        ).first()
        return self._posting(row) if row else None

    async def points_since(
        self, member_id: str, kind: PostingKind, since: datetime, unit: str | None = None
    ) -> int:
        """Sum of a member's postings of one kind since a time (daily caps)."""
        query = select(func.coalesce(func.sum(t.postings.c.points), 0)).where(
            t.postings.c.member_id == member_id,
            t.postings.c.kind == kind.value,
            t.postings.c.posted_at >= since,
        )
        if unit is not None:
            query = query.where(t.postings.c.unit == unit)
        return int(await self.session.scalar(query) or 0)

    async def has_postings(self, member_id: str, kind: PostingKind) -> bool:
        found = await self.session.scalar(
            select(t.postings.c.posting_id)
            .where(t.postings.c.member_id == member_id, t.postings.c.kind == kind.value)
            .limit(1)
        )
        return found is not None

    async def statement(
        self,
        member_id: str,
        *,
        before_seq: int | None,
        limit: int,
        unit: str = "",
        kind: PostingKind | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[Posting]:
        query = select(t.postings).where(t.postings.c.member_id == member_id)
        if before_seq is not None:
            query = query.where(t.postings.c.seq < before_seq)
        if unit:
            query = query.where(t.postings.c.unit == unit)
        if kind is not None:
            query = query.where(t.postings.c.kind == kind.value)
        if start is not None:
            query = query.where(t.postings.c.occurred_at >= start)
        if end is not None:
            query = query.where(t.postings.c.occurred_at < end)
        rows = await self.session.execute(query.order_by(t.postings.c.seq.desc()).limit(limit))
        return [self._posting(r) for r in rows]

    # --- lots ---------------------------------------------------------------------------------
    async def lots(self, member_id: str, statuses: Sequence[LotStatus]) -> list[Lot]:
        rows = await self.session.execute(
            select(t.lots).where(
                t.lots.c.member_id == member_id,
                t.lots.c.status.in_([s.value for s in statuses]),
                t.lots.c.remaining > 0,
            )
        )
        return [self._lot(r) for r in rows]

    async def lot_page(
        self,
        member_id: str,
        *,
        after: tuple[datetime, datetime, str] | None,
        limit: int,
        unit: str = "",
        expire_before: datetime | None = None,
        show_empty: bool = False,
    ) -> list[LotRecord]:
        """A page of the member's lots in spending order (soonest expiry, never last; then
        oldest; then by ID), after the position `after` (the last lot's `lot_position`)."""
        expires = func.coalesce(t.lots.c.expires_at, literal(NEVER, DateTime(timezone=True)))
        query = select(t.lots).where(t.lots.c.member_id == member_id)
        if not show_empty:
            query = query.where(
                t.lots.c.remaining > 0,
                t.lots.c.status.in_([LotStatus.OPEN.value, LotStatus.PENDING.value]),
            )
        if unit:
            query = query.where(t.lots.c.earned_unit == unit)
        if expire_before is not None:
            query = query.where(t.lots.c.expires_at < expire_before)
        if after is not None:
            query = query.where(
                tuple_(expires, t.lots.c.earned_at, t.lots.c.lot_id)
                > tuple_(
                    literal(after[0], DateTime(timezone=True)),
                    literal(after[1], DateTime(timezone=True)),
                    cast(after[2], UUID),
                )
            )
        order = (expires, t.lots.c.earned_at, t.lots.c.lot_id)
        rows = await self.session.execute(query.order_by(*order).limit(limit))
        return [LotRecord(member_id, self._lot(r), r.points) for r in rows]

    async def lot(self, member_id: str, lot_id: str) -> Lot | None:
        row = (
            await self.session.execute(
                select(t.lots).where(t.lots.c.member_id == member_id, t.lots.c.lot_id == lot_id)
            )
        ).first()
        return self._lot(row) if row else None

    @staticmethod
    def _lot(row: Any) -> Lot:
        return Lot(
            lot_id=str(row.lot_id),
            earned_unit=row.earned_unit,
            remaining=row.remaining,
            earned_at=row.earned_at,
            expires_at=row.expires_at,
            status=LotStatus(row.status),
            posting_id=str(row.posting_id),
            available_at=row.available_at,
        )

    async def movements(self, member_id: str, posting_id: str) -> list[tuple[str, int]]:
        rows = await self.session.execute(
            select(t.lot_movements.c.lot_id, t.lot_movements.c.points).where(
                t.lot_movements.c.member_id == member_id,
                t.lot_movements.c.posting_id == posting_id,
            )
        )
        return [(str(r.lot_id), r.points) for r in rows]

    async def lots_from(self, holder: str, origin: str) -> list[Lot]:
        """The lots `holder` took over from `origin` at a merge."""
        rows = await self.session.execute(
            select(t.lots).where(t.lots.c.member_id == holder, t.lots.c.origin_member_id == origin)
        )
        return [self._lot(r) for r in rows]

    async def _give_back_lots(
        self, holder: str, origin: str, lot_ids: Sequence[str], renamed: dict[str, str]
    ) -> None:
        """An unmerge: the orders of lots `holder` took over from `origin` are `origin`'s again
        (pointing at the lot that now carries their points, where one does), and the lots left
        with `holder` are its own from now on."""
        conn = await driver_connection(self.session)
        await conn.execute(
            "UPDATE orders AS o SET member_id = $2, lot_id = coalesce(m.new_id, o.lot_id) "
            "FROM unnest($3::uuid[]) AS l(lot_id) "
            "LEFT JOIN unnest($4::uuid[], $5::uuid[]) AS m(old_id, new_id) ON m.old_id = l.lot_id "
            "WHERE o.member_id = $1 AND o.lot_id = l.lot_id",
            holder,
            origin,
            list(lot_ids),
            list(renamed),
            list(renamed.values()),
        )
        await conn.execute(
            "UPDATE lots SET origin_member_id = NULL "
            "WHERE member_id = $1 AND origin_member_id = $2",
            holder,
            origin,
        )

    async def expiring_soon(self, member_id: str, until: datetime) -> int:
        conn = await driver_connection(self.session)
        total = await conn.fetchval(
            "SELECT coalesce(sum(remaining), 0) FROM lots "
            "WHERE member_id = $1 AND status = 'open' AND expires_at < $2",
            member_id,
            until,
        )
        return int(total or 0)

    async def moved_lots(self, member_id: str, posting_id: str) -> list[tuple[Lot, int]]:
        """The lots a posting moved points of, with how many (negative: taken)."""
        moved = []
        for lot_id, points in await self.movements(member_id, posting_id):
            lot = await self.lot(member_id, lot_id)
            if lot is not None:
                moved.append((lot, points))
        return moved

    # --- jobs ---------------------------------------------------------------------------------
    async def members_with_due_pending(self, as_of: datetime, limit: int) -> list[str]:
        """In member order, as every chunked job takes the accounts' locks: replicas running
        activation and expiry at once lock in one order, never in a cycle."""
        rows = await self.session.scalars(
            select(t.lots.c.member_id)
            .where(t.lots.c.status == LotStatus.PENDING.value, t.lots.c.available_at <= as_of)
            .distinct()
            .order_by(t.lots.c.member_id)
            .limit(limit)
        )
        return [str(m) for m in rows]

    async def due_pending_lots(self, member_id: str, as_of: datetime) -> list[Lot]:
        rows = await self.session.execute(
            select(t.lots).where(
                t.lots.c.member_id == member_id,
                t.lots.c.status == LotStatus.PENDING.value,
                t.lots.c.available_at <= as_of,
            )
        )
        return [self._lot(r) for r in rows]

    async def members_with_expired_lots(self, as_of: datetime, limit: int) -> list[str]:
        """In member order (see `members_with_due_pending`)."""
        rows = await self.session.scalars(
            select(t.lots.c.member_id)
            .where(*_expired(as_of))
            .distinct()
            .order_by(t.lots.c.member_id)
            .limit(limit)
        )
        return [str(m) for m in rows]

    async def count_members_with_due_pending(self, as_of: datetime) -> int:
        """One query over the partial index `lots_pending`."""
        found = await self.session.scalar(
            select(func.count(t.lots.c.member_id.distinct())).where(
                t.lots.c.status == LotStatus.PENDING.value, t.lots.c.available_at <= as_of
            )
        )
        return int(found or 0)

    async def count_members_with_expired_lots(self, as_of: datetime) -> int:
        """One query over the partial index `lots_expiring`."""
        found = await self.session.scalar(
            select(func.count(t.lots.c.member_id.distinct())).where(*_expired(as_of))
        )
        return int(found or 0)

    # --- the ledger as it stands, for a read side to catch up ---------------------------------
    async def members_after(self, after: str | None, limit: int) -> list[str]:
        """The next `limit` members with an account, in member order, after `after`."""
        query = select(t.accounts.c.member_id).order_by(t.accounts.c.member_id).limit(limit)
        if after is not None:
            query = query.where(t.accounts.c.member_id > after)
        return [str(m) for m in await self.session.scalars(query)]

    async def count_members_after(self, after: str | None) -> int:
        query = select(func.count()).select_from(t.accounts)
        if after is not None:
            query = query.where(t.accounts.c.member_id > after)
        return int(await self.session.scalar(query) or 0)

    async def ledgers(
        self, member_ids: Sequence[str]
    ) -> dict[str, tuple[list[LedgerPosting], list[LotMovement]]]:
        """The members' postings (in the order they were posted) and lot movements, as their
        LedgerPosted events carried them: two statements for any number of members."""
        found: dict[str, tuple[list[LedgerPosting], list[LotMovement]]] = {
            m: ([], []) for m in member_ids
        }
        p = t.postings.c
        for row in await self.session.execute(
            select(p.member_id, p.posting_id, p.kind, p.unit, p.points, p.posted_at, p.occurred_at)
            .where(p.member_id.in_(member_ids))
            .order_by(p.member_id, p.seq)
        ):
            found[str(row.member_id)][0].append(
                LedgerPosting(
                    str(row.posting_id),
                    PostingKind(row.kind),
                    row.unit,
                    row.points,
                    row.posted_at,
                    row.occurred_at,
                )
            )
        m, lot = t.lot_movements.c, t.lots.c
        for moved in await self.session.execute(
            select(
                m.member_id,
                m.posting_id,
                m.lot_id,
                m.earned_unit,
                m.unit,
                m.points,
                m.posted_at,
                lot.expires_at,
            )
            .select_from(
                t.lot_movements.outerjoin(
                    t.lots, (lot.member_id == m.member_id) & (lot.lot_id == m.lot_id)
                )
            )
            .where(m.member_id.in_(member_ids))
            .order_by(m.member_id, m.posted_at, m.posting_id, m.lot_id)
        ):
            found[str(moved.member_id)][1].append(
                LotMovement(
                    str(moved.posting_id),
                    str(moved.lot_id),
                    moved.earned_unit,
                    moved.unit,
                    moved.points,
                    moved.posted_at,
                    moved.expires_at,
                )
            )
        return found

    # --- saving an account --------------------------------------------------------------------
    async def save(self, account: Account, now: datetime) -> None:
        """Write what the account recorded since it was loaded, then its balances."""
        changes, account.changes = account.changes, Changes()
        member_id = account.member_id
        if (posted := LedgerPosted.of(member_id, changes)) is not None:
            account.events.append(posted)
        if changes.earn is not None:
            await self._add_earn(changes.earn)
        if changes.postings:
            await self.session.execute(
                insert(t.postings).values([_posting_row(p) for p in changes.postings])
            )
        created = {lot.lot_id for lot, _ in changes.new_lots}
        if changes.new_lots:
            await self.session.execute(
                insert(t.lots).values(
                    [_lot_row(member_id, lot, points) for lot, points in changes.new_lots]
                )
            )
        for lot in changes.lots.values():
            if lot.lot_id not in created:
                await self.session.execute(
                    update(t.lots)
                    .where(t.lots.c.member_id == member_id, t.lots.c.lot_id == lot.lot_id)
                    .values(remaining=lot.remaining, status=lot.status.value)
                )
        if changes.moves:
            await self.session.execute(
                insert(t.lot_movements).values(
                    [
                        {
                            "member_id": member_id,
                            "posting_id": move.posting_id,
                            "lot_id": move.lot.lot_id,
                            "points": move.points,
                            "earned_unit": move.lot.earned_unit,
                            "unit": move.unit,
                            "posted_at": move.at,
                        }
                        for move in changes.moves
                    ]
                )
            )
        if changes.settled:
            await self.session.execute(
                update(t.postings)
                .where(
                    t.postings.c.member_id == member_id,
                    t.postings.c.posting_id.in_(changes.settled),
                )
                .values(pending=False)
            )
        for absorbed in changes.absorbed:
            await self._take_over(absorbed, member_id)
        for origin, lot_ids, renamed in changes.given_back:
            await self._give_back_lots(member_id, origin, lot_ids, renamed)
        conn = await driver_connection(self.session)
        await conn.execute(
            "UPDATE accounts SET state = $2, merged_into = $3, tier = $4, tier_effective_at = $5, "
            "available = $6, pending = $7, lifetime_earned = $8, updated_at = $9, "
            "referral_pending = $10 WHERE member_id = $1",
            member_id,
            account.state,
            account.merged_into or None,
            account.tier,
            account.tier_effective_at,
            account.available,
            account.pending,
            account.lifetime_earned,
            now,
            account.referral_pending,
        )

    async def _add_earn(self, entry: EarnEntry) -> None:
        """The earn posting, its lot and the lot's movement in one round trip."""
        posting, lot = entry.posting, entry.lot
        conn = await driver_connection(self.session)
        await conn.execute(
            _ADD_EARN,
            posting.member_id,
            posting.posting_id,
            posting.points,
            posting.pending,
            lot.available_at,
            posting.unit,
            posting.channel,
            posting.order_id,
            posting.occurred_at,
            posting.posted_at,
            posting.programme_version,
            json.dumps(posting.breakdown),
            lot.lot_id,
            lot.status.value,
            lot.expires_at,
        )

    async def _take_over(self, absorbed: str, survivor: str) -> None:
        """A merge: the absorbed member's lots and orders become the survivor's; each lot
        remembers whose it was (the first owner, along a chain of merges)."""
        await self.session.execute(
            update(t.lots)
            .where(t.lots.c.member_id == absorbed)
            .values(
                member_id=survivor,
                origin_member_id=func.coalesce(t.lots.c.origin_member_id, t.lots.c.member_id),
            )
        )
        await self.session.execute(
            update(t.orders).where(t.orders.c.member_id == absorbed).values(member_id=survivor)
        )


def _posting_row(posting: Posting) -> dict[str, Any]:
    return {
        "member_id": posting.member_id,
        "posting_id": posting.posting_id,
        "kind": posting.kind.value,
        "points": posting.points,
        "pending": posting.pending,
        "available_at": posting.available_at,
        "unit": posting.unit,
        "channel": posting.channel,
        "order_id": posting.order_id,
        "occurred_at": posting.occurred_at,
        "posted_at": posting.posted_at,
        "programme_version": posting.programme_version,
        "breakdown": posting.breakdown,
        "related_posting_id": posting.related_posting_id,
        "reason": posting.reason,
        "unrecovered_points": posting.unrecovered_points,
    }


def _lot_row(member_id: str, lot: Lot, points: int) -> dict[str, Any]:
    return {
        "member_id": member_id,
        "lot_id": lot.lot_id,
        "posting_id": lot.posting_id,
        "earned_unit": lot.earned_unit,
        "points": points,
        "remaining": lot.remaining,
        "status": lot.status.value,
        "earned_at": lot.earned_at,
        "available_at": lot.available_at,
        "expires_at": lot.expires_at,
    }


def _expired(as_of: datetime) -> tuple[Any, ...]:
    """Lots with points left whose expiry has come by `as_of` (the index `lots_expiring`)."""
    return (
        t.lots.c.status == LotStatus.OPEN.value,
        t.lots.c.remaining > 0,
        t.lots.c.expires_at <= as_of,
    )
