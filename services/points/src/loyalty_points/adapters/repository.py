"""The ledger in PostgreSQL. Every change to a member's points happens with their account row
locked (`SELECT ... FOR UPDATE`), so concurrent calls for one member are serialised and a
balance can never be spent twice; CHECK constraints back that up."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loyalty_kit.db import driver_connection
from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_points.adapters import tables as t
from loyalty_points.domain.ledger import REDEEMING, Lot, LotStatus, PostingKind
from loyalty_points.domain.programme import Programme, programme_from_json, programme_to_json


@dataclass
class Account:
    member_id: str
    state: str = "active"
    merged_into: str = ""
    tier: str = ""
    tier_effective_at: datetime | None = None
    available: int = 0
    pending: int = 0
    lifetime_earned: int = 0
    referral_pending: bool = False


@dataclass
class Posting:
    posting_id: str
    member_id: str
    kind: PostingKind
    points: int
    unit: str
    occurred_at: datetime
    posted_at: datetime
    channel: str = "CHANNEL_UNSPECIFIED"
    order_id: str = ""
    pending: bool = False
    available_at: datetime | None = None
    programme_version: int | None = None
    breakdown: dict[str, Any] | None = None
    related_posting_id: str | None = None
    reason: str = ""
    unrecovered_points: int = 0
    seq: int = 0


@dataclass
class OrderRecord:
    unit: str
    order_id: str
    member_id: str
    posting_id: str
    lot_id: str
    currency: str
    # line_id -> {"points": int, "reversed": int, "amount": str}
    lines: dict[str, dict[str, Any]] = field(default_factory=dict)
    bonus_points: int = 0
    bonus_reversed: bool = False


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

_ACCOUNT = """
SELECT member_id, state, merged_into, tier, tier_effective_at, available, pending,
       lifetime_earned, referral_pending
FROM accounts WHERE member_id = $1
"""
_ACCOUNT_FOR_UPDATE = _ACCOUNT + " FOR UPDATE"


def new_id() -> str:
    return str(uuid.uuid4())


class ProgrammeCache:
    """Programme versions are immutable once published: a process keeps them all and looks for
    new ones every `ttl` seconds (a version published on another replica is seen within that;
    one published here at once)."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._versions: list[Programme] | None = None
        self._expires = 0.0

    def get(self) -> list[Programme] | None:
        return self._versions if time.monotonic() < self._expires else None

    def put(self, versions: list[Programme]) -> None:
        self._versions, self._expires = versions, time.monotonic() + self.ttl

    def invalidate(self) -> None:
        self._versions, self._expires = None, 0.0


class Ledger:
    def __init__(self, session: AsyncSession, programmes: ProgrammeCache | None = None) -> None:
        self.session = session
        self.programmes = programmes or ProgrammeCache(ttl=0)

    # --- programme ----------------------------------------------------------------------------
    async def programme_at(self, at: datetime) -> Programme | None:
        versions = self.programmes.get()
        if versions is None:
            rows = await self.session.execute(
                select(t.programme_versions).order_by(
                    t.programme_versions.c.effective_from, t.programme_versions.c.version
                )
            )
            versions = [programme_from_json(r.version, r.effective_from, r.rules) for r in rows]
            self.programmes.put(versions)
        in_force = [p for p in versions if p.effective_from <= at]
        return in_force[-1] if in_force else None

    async def programme_version(self, version: int) -> Programme | None:
        row = (
            await self.session.execute(
                select(t.programme_versions).where(t.programme_versions.c.version == version)
            )
        ).first()
        return programme_from_json(row.version, row.effective_from, row.rules) if row else None

    async def add_programme(self, programme: Programme, reason: str) -> int:
        # A table lock keeps version numbers gap-free and ordered under concurrent publishers.
        await self.session.execute(
            select(func.pg_advisory_xact_lock(0x9E0_9A11))  # type: ignore[arg-type]
        )
        latest = await self.session.scalar(select(func.max(t.programme_versions.c.version)))
        version = int(latest or 0) + 1
        await self.session.execute(
            insert(t.programme_versions).values(
                version=version,
                effective_from=programme.effective_from,
                rules=programme_to_json(programme),
                reason=reason,
            )
        )
        self.programmes.invalidate()
        return version

    # --- accounts -----------------------------------------------------------------------------
    async def account(self, member_id: str, *, lock: bool = False) -> Account | None:
        conn = await driver_connection(self.session)
        row = await conn.fetchrow(_ACCOUNT_FOR_UPDATE if lock else _ACCOUNT, member_id)
        if row is None:
            return None
        return Account(
            member_id=str(row["member_id"]),
            state=row["state"],
            merged_into=str(row["merged_into"] or ""),
            tier=row["tier"],
            tier_effective_at=row["tier_effective_at"],
            available=row["available"],
            pending=row["pending"],
            lifetime_earned=row["lifetime_earned"],
            referral_pending=row["referral_pending"],
        )

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

    async def save_account(self, account: Account, now: datetime) -> None:
        conn = await driver_connection(self.session)
        await conn.execute(
            "UPDATE accounts SET state = $2, merged_into = $3, tier = $4, tier_effective_at = $5, "
            "available = $6, pending = $7, lifetime_earned = $8, updated_at = $9, "
            "referral_pending = $10 WHERE member_id = $1",
            account.member_id,
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

    # --- postings -----------------------------------------------------------------------------
    async def add_posting(self, posting: Posting) -> None:
        await self.session.execute(
            insert(t.postings).values(
                member_id=posting.member_id,
                posting_id=posting.posting_id,
                kind=posting.kind.value,
                points=posting.points,
                pending=posting.pending,
                available_at=posting.available_at,
                unit=posting.unit,
                channel=posting.channel,
                order_id=posting.order_id,
                occurred_at=posting.occurred_at,
                posted_at=posting.posted_at,
                programme_version=posting.programme_version,
                breakdown=posting.breakdown,
                related_posting_id=posting.related_posting_id,
                reason=posting.reason,
                unrecovered_points=posting.unrecovered_points,
            )
        )

    async def set_posting_pending(self, member_id: str, posting_id: str, pending: bool) -> None:
        await self.session.execute(
            update(t.postings)
            .where(t.postings.c.member_id == member_id, t.postings.c.posting_id == posting_id)
            .values(pending=pending)
        )

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

    # --- referrals ----------------------------------------------------------------------------
    async def referral(self, member_id: str) -> tuple[str, datetime | None] | None:
        row = (
            await self.session.execute(
                select(t.referrals).where(t.referrals.c.member_id == member_id)
            )
        ).first()
        return (str(row.referrer_id), row.rewarded_at) if row else None

    async def add_referral(self, member_id: str, referrer_id: str, now: datetime) -> None:
        await self.session.execute(
            insert(t.referrals).values(
                member_id=member_id, referrer_id=referrer_id, recorded_at=now
            )
        )

    async def mark_referral_rewarded(self, member_id: str, now: datetime) -> None:
        await self.session.execute(
            update(t.referrals).where(t.referrals.c.member_id == member_id).values(rewarded_at=now)
        )

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
        )

    async def add_lot(
        self,
        member_id: str,
        lot: Lot,
        posting_id: str,
        points: int,
        available_at: datetime | None,
    ) -> None:
        await self.session.execute(
            insert(t.lots).values(
                member_id=member_id,
                lot_id=lot.lot_id,
                posting_id=posting_id,
                earned_unit=lot.earned_unit,
                points=points,
                remaining=lot.remaining,
                status=lot.status.value,
                earned_at=lot.earned_at,
                available_at=available_at,
                expires_at=lot.expires_at,
            )
        )

    async def save_lot(self, member_id: str, lot: Lot) -> None:
        await self.session.execute(
            update(t.lots)
            .where(t.lots.c.member_id == member_id, t.lots.c.lot_id == lot.lot_id)
            .values(remaining=lot.remaining, status=lot.status.value)
        )

    async def move(
        self,
        member_id: str,
        posting_id: str,
        moves: Sequence[tuple[Lot, int]],
        unit: str,
        at: datetime,
    ) -> None:
        """Record which lots gave (negative) or got back (positive) how many points."""
        if moves:
            await self.session.execute(
                insert(t.lot_movements).values(
                    [
                        {
                            "member_id": member_id,
                            "posting_id": posting_id,
                            "lot_id": lot.lot_id,
                            "points": points,
                            "earned_unit": lot.earned_unit,
                            "unit": unit,
                            "posted_at": at,
                        }
                        for lot, points in moves
                    ]
                )
            )

    async def movements(self, member_id: str, posting_id: str) -> list[tuple[str, int]]:
        rows = await self.session.execute(
            select(t.lot_movements.c.lot_id, t.lot_movements.c.points).where(
                t.lot_movements.c.member_id == member_id,
                t.lot_movements.c.posting_id == posting_id,
            )
        )
        return [(str(r.lot_id), r.points) for r in rows]

    async def reassign_lots(self, absorbed: str, survivor: str) -> None:
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

    async def lots_from(self, holder: str, origin: str) -> list[tuple[Lot, str, datetime | None]]:
        """The lots `holder` took over from `origin` at a merge, with the posting each belongs
        to and when a pending one becomes available."""
        rows = await self.session.execute(
            select(t.lots).where(t.lots.c.member_id == holder, t.lots.c.origin_member_id == origin)
        )
        return [(self._lot(r), str(r.posting_id), r.available_at) for r in rows]

    async def give_back_lots(
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

    # --- orders -------------------------------------------------------------------------------
    async def order(self, unit: str, order_id: str) -> OrderRecord | None:
        row = (
            await self.session.execute(
                select(t.orders).where(t.orders.c.unit == unit, t.orders.c.order_id == order_id)
            )
        ).first()
        if row is None:
            return None
        return OrderRecord(
            unit=row.unit,
            order_id=row.order_id,
            member_id=str(row.member_id),
            posting_id=str(row.posting_id),
            lot_id=str(row.lot_id),
            currency=row.currency,
            lines=dict(row.lines),
            bonus_points=row.bonus_points,
            bonus_reversed=row.bonus_reversed,
        )

    async def claim_order(self, order: OrderRecord) -> bool:
        """Record the order; False if the unit's order id has earned already (one statement
        both checks and claims, and a concurrent duplicate waits for the first to finish)."""
        conn = await driver_connection(self.session)
        claimed = await conn.fetchval(
            "INSERT INTO orders (unit, order_id, member_id, posting_id, lot_id, currency, lines, "
            "bonus_points, bonus_reversed) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9) "
            "ON CONFLICT DO NOTHING RETURNING true",
            order.unit,
            order.order_id,
            order.member_id,
            order.posting_id,
            order.lot_id,
            order.currency,
            json.dumps(order.lines),
            order.bonus_points,
            order.bonus_reversed,
        )
        return bool(claimed)

    async def add_earn(self, posting: Posting, lot: Lot, available_at: datetime | None) -> None:
        """The earn posting, its lot and the lot's movement in one round trip."""
        conn = await driver_connection(self.session)
        await conn.execute(
            _ADD_EARN,
            posting.member_id,
            posting.posting_id,
            posting.points,
            posting.pending,
            available_at,
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

    async def save_order(self, order: OrderRecord) -> None:
        await self.session.execute(
            update(t.orders)
            .where(t.orders.c.unit == order.unit, t.orders.c.order_id == order.order_id)
            .values(lines=order.lines, bonus_reversed=order.bonus_reversed)
        )

    async def record_tier_change(self, member_id: str, effective_at: datetime, tier: str) -> None:
        conn = await driver_connection(self.session)
        await conn.execute(
            "INSERT INTO tier_changes (member_id, effective_at, tier) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING",
            member_id,
            effective_at,
            tier,
        )

    async def tier_at(self, member_id: str, at: datetime) -> str:
        """The tier the member held at `at` ('' before any change known here: the entry tier)."""
        conn = await driver_connection(self.session)
        found = await conn.fetchval(
            "SELECT tier FROM tier_changes WHERE member_id = $1 AND effective_at <= $2 "
            "ORDER BY effective_at DESC LIMIT 1",
            member_id,
            at,
        )
        return str(found or "")

    async def claim_partner_reference(
        self, partner: str, reference: str, member_id: str, posting_id: str
    ) -> str | None:
        """Record a partner's transaction reference; None when it is new, else the posting it
        already credited (one statement checks and claims; a concurrent duplicate waits)."""
        conn = await driver_connection(self.session)
        claimed = await conn.fetchval(
            "INSERT INTO partner_references (partner, reference, member_id, posting_id) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
            partner,
            reference,
            member_id,
            posting_id,
        )
        if claimed:
            return None
        earlier = await conn.fetchval(
            "SELECT posting_id FROM partner_references WHERE partner = $1 AND reference = $2",
            partner,
            reference,
        )
        return str(earlier)

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

    async def due_pending_lots(self, member_id: str, as_of: datetime) -> list[tuple[Lot, str]]:
        rows = await self.session.execute(
            select(t.lots).where(
                t.lots.c.member_id == member_id,
                t.lots.c.status == LotStatus.PENDING.value,
                t.lots.c.available_at <= as_of,
            )
        )
        return [(self._lot(r), str(r.posting_id)) for r in rows]

    async def pending_lot_of_posting(self, member_id: str, posting_id: str) -> Lot | None:
        row = (
            await self.session.execute(
                select(t.lots).where(
                    t.lots.c.member_id == member_id,
                    t.lots.c.posting_id == posting_id,
                    t.lots.c.status == LotStatus.PENDING.value,
                )
            )
        ).first()
        return self._lot(row) if row else None

    async def members_with_expired_lots(self, as_of: datetime, limit: int) -> list[str]:
        """In member order (see `members_with_due_pending`)."""
        rows = await self.session.scalars(
            select(t.lots.c.member_id)
            .where(
                t.lots.c.status == LotStatus.OPEN.value,
                t.lots.c.remaining > 0,
                t.lots.c.expires_at <= as_of,
            )
            .distinct()
            .order_by(t.lots.c.member_id)
            .limit(limit)
        )
        return [str(m) for m in rows]

    # --- settlement ---------------------------------------------------------------------------
    async def settlement(self, start: datetime, end: datetime) -> dict[str, Any]:
        in_period = and_(t.postings.c.posted_at >= start, t.postings.c.posted_at < end)
        by_unit_kind = await self.session.execute(
            select(t.postings.c.unit, t.postings.c.kind, func.sum(t.postings.c.points))
            .where(in_period)
            .group_by(t.postings.c.unit, t.postings.c.kind, func.sign(t.postings.c.points))
        )
        moved = and_(t.lot_movements.c.posted_at >= start, t.lot_movements.c.posted_at < end)
        flows = await self.session.execute(
            select(
                t.lot_movements.c.earned_unit,
                t.lot_movements.c.unit,
                func.sum(t.lot_movements.c.points),
            )
            .join(
                t.postings,
                and_(
                    t.postings.c.member_id == t.lot_movements.c.member_id,
                    t.postings.c.posting_id == t.lot_movements.c.posting_id,
                ),
            )
            .where(
                moved,
                t.postings.c.kind.in_([k.value for k in REDEEMING])
                | (
                    (t.postings.c.kind == PostingKind.PARTNER_EXCHANGE_REVERSE.value)
                    & (t.postings.c.points > 0)
                ),
            )
            .group_by(t.lot_movements.c.earned_unit, t.lot_movements.c.unit)
        )
        # Points that left the books by lot (expiry, erasure), under the unit that issued them.
        lapsed = await self.session.execute(
            select(
                t.lot_movements.c.earned_unit,
                t.postings.c.kind,
                func.sum(t.lot_movements.c.points),
            )
            .join(
                t.postings,
                and_(
                    t.postings.c.member_id == t.lot_movements.c.member_id,
                    t.postings.c.posting_id == t.lot_movements.c.posting_id,
                ),
            )
            .where(
                moved,
                t.postings.c.kind.in_(
                    [PostingKind.EXPIRE.value, PostingKind.ERASURE_FORFEIT.value]
                ),
            )
            .group_by(t.lot_movements.c.earned_unit, t.postings.c.kind)
        )
        by_kind: dict[str, dict[str, int]] = {"expire": {}, "erasure_forfeit": {}}
        for unit, kind, points in lapsed:
            by_kind[kind][unit] = -int(points)
        total = await self.session.scalar(
            select(func.coalesce(func.sum(t.postings.c.points), 0)).where(in_period)
        )
        return {
            "by_unit_kind": [(u, PostingKind(k), int(p)) for u, k, p in by_unit_kind],
            "flows": [(e, r, -int(p)) for e, r, p in flows],
            "expired": by_kind[PostingKind.EXPIRE.value],
            "forfeited": by_kind[PostingKind.ERASURE_FORFEIT.value],
            "total": int(total or 0),
        }
