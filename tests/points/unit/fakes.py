"""The ledger and unit of work in memory, for use-case tests that need no server: the same
use cases as in production, in milliseconds. Loads answer copies, as a database would, so a
change the use case forgets to save is lost here too."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from loyalty_kit.kernel.members import MemberState
from loyalty_points.domain.account import Account
from loyalty_points.domain.activities import Count, RecordedActivity
from loyalty_points.domain.events import Event, LedgerPosted, LedgerPosting, LotMovement
from loyalty_points.domain.ledger import REDEEMING, Changes, Lot, LotStatus, Posting, PostingKind
from loyalty_points.domain.migration import Carry
from loyalty_points.domain.orders import OrderRecord
from loyalty_points.domain.programme import Holding, Programme, badges_held


@dataclasses.dataclass
class StoredLot:
    member_id: str
    lot: Lot
    points: int
    origin: str | None = None


@dataclasses.dataclass
class Movement:
    member_id: str
    posting_id: str
    lot_id: str
    points: int
    earned_unit: str
    unit: str
    at: datetime


class FakeLedger:
    def __init__(self) -> None:
        self.programmes: list[Programme] = []
        self.programme_reads = 0  # how often a use case asked for programme versions
        self.accounts: dict[str, Account] = {}
        self.postings: list[Posting] = []
        self.lot_rows: dict[str, StoredLot] = {}
        self.movement_rows: list[Movement] = []
        self.orders: dict[tuple[str, str], OrderRecord] = {}
        self.partner_references: dict[tuple[str, str], str] = {}
        self.referrals: dict[str, list[Any]] = {}
        self.tier_rows: dict[tuple[str, datetime], str] = {}
        self.badge_rows: dict[str, list[Holding]] = {}
        self.legacy_balances: dict[tuple[str, str], Carry] = {}
        self.activities: dict[tuple[str, str], RecordedActivity] = {}
        self.seen: list[Account] = []

    # --- programme
    async def programme_at(self, at: datetime) -> Programme | None:
        self.programme_reads += 1
        in_force = [p for p in self.programmes if p.effective_from <= at]
        return in_force[-1] if in_force else None

    async def programmes_between(self, since: datetime, until: datetime) -> list[Programme]:
        self.programme_reads += 1
        return [
            p
            for i, p in enumerate(self.programmes)
            if p.effective_from <= until
            and (i + 1 == len(self.programmes) or self.programmes[i + 1].effective_from > since)
        ]

    async def programme_version(self, version: int) -> Programme | None:
        return next((p for p in self.programmes if p.version == version), None)

    async def add_programme(self, programme: Programme, reason: str) -> int:
        self.programmes.append(programme)
        self.programmes.sort(key=lambda p: (p.effective_from, len(self.programmes)))
        return len(self.programmes)

    # --- accounts
    async def account(self, member_id: str, *, lock: bool = False) -> Account | None:
        stored = self.accounts.get(member_id)
        if stored is None:
            return None
        account = dataclasses.replace(stored, changes=Changes(), events=[])
        self.seen.append(account)
        return account

    async def create_account(self, account: Account, now: datetime) -> None:
        if account.member_id not in self.accounts:
            self.accounts[account.member_id] = dataclasses.replace(
                account, available=0, pending=0, lifetime_earned=0, referral_pending=False
            )

    async def lock_accounts(self, member_ids: Sequence[str], now: datetime) -> dict[str, Account]:
        found = {}
        for member_id in sorted(set(member_ids)):
            await self.create_account(Account(member_id), now)
            account = await self.account(member_id, lock=True)
            assert account is not None
            found[member_id] = account
        return found

    async def save_many(self, accounts: Sequence[Account], now: datetime) -> None:
        for account in accounts:
            await self.save(account, now)

    async def save(self, account: Account, now: datetime) -> None:
        changes, account.changes = account.changes, Changes()
        member_id = account.member_id
        if (posted := LedgerPosted.of(member_id, changes)) is not None:  # as the real ledger
            account.events.append(posted)
        if changes.earn is not None:
            self._post(changes.earn.posting)
            if changes.earn.posting.points > 0:
                lot = changes.earn.lot
                self.lot_rows[lot.lot_id] = StoredLot(member_id, copy.copy(lot), lot.remaining)
                self._move(
                    member_id,
                    changes.earn.posting.posting_id,
                    lot,
                    lot.remaining,
                    lot.earned_unit,
                    changes.earn.posting.posted_at,
                )
        for posting in changes.postings:
            self._post(posting)
        created = set()
        for lot, points in changes.new_lots:
            self.lot_rows[lot.lot_id] = StoredLot(member_id, copy.copy(lot), points)
            created.add(lot.lot_id)
        for lot in changes.lots.values():
            if lot.lot_id not in created:
                stored = self.lot_rows[lot.lot_id].lot
                stored.remaining, stored.status = lot.remaining, lot.status
        for move in changes.moves:
            self._move(member_id, move.posting_id, move.lot, move.points, move.unit, move.at)
        for posting in self.postings:
            if posting.member_id == member_id and posting.posting_id in changes.settled:
                posting.pending = False
        for absorbed in changes.absorbed:
            for row in self.lot_rows.values():
                if row.member_id == absorbed:
                    row.origin = row.origin or row.member_id
                    row.member_id = member_id
            for order in self.orders.values():
                if order.member_id == absorbed:
                    order.member_id = member_id
        for origin, lot_ids, renamed in changes.given_back:
            for order in self.orders.values():
                if order.member_id == member_id and order.lot_id in lot_ids:
                    order.member_id, order.lot_id = origin, renamed.get(order.lot_id, order.lot_id)
            for row in self.lot_rows.values():
                if row.member_id == member_id and row.origin == origin:
                    row.origin = None
        self.accounts[member_id] = dataclasses.replace(account, changes=Changes(), events=[])

    def _post(self, posting: Posting) -> None:
        self.postings.append(dataclasses.replace(posting, seq=len(self.postings) + 1))

    def _move(
        self, member_id: str, posting_id: str, lot: Lot, points: int, unit: str, at: datetime
    ) -> None:
        self.movement_rows.append(
            Movement(member_id, posting_id, lot.lot_id, points, lot.earned_unit, unit, at)
        )

    # --- postings and lots
    def postings_of(self, member_id: str, kind: PostingKind | None = None) -> list[Posting]:
        return [p for p in self.postings if p.member_id == member_id and kind in (None, p.kind)]

    async def posting(self, member_id: str, posting_id: str) -> Posting | None:
        found = [p for p in self.postings_of(member_id) if p.posting_id == posting_id]
        return copy.copy(found[0]) if found else None

    async def undoing(self, member_id: str, posting_id: str, kind: PostingKind) -> Posting | None:
        found = [p for p in self.postings_of(member_id, kind) if p.related_posting_id == posting_id]
        return copy.copy(found[0]) if found else None

    async def points_since(
        self, member_id: str, kind: PostingKind, since: datetime, unit: str | None = None
    ) -> int:
        return sum(
            p.points
            for p in self.postings_of(member_id, kind)
            if p.posted_at >= since and unit in (None, p.unit)
        )

    async def has_postings(self, member_id: str, kind: PostingKind) -> bool:
        return bool(self.postings_of(member_id, kind))

    def lots_of(self, member_id: str) -> list[Lot]:
        return [copy.copy(r.lot) for r in self.lot_rows.values() if r.member_id == member_id]

    async def lots(self, member_id: str, statuses: Sequence[LotStatus]) -> list[Lot]:
        return [
            lot for lot in self.lots_of(member_id) if lot.status in statuses and lot.remaining > 0
        ]

    async def lot(self, member_id: str, lot_id: str) -> Lot | None:
        row = self.lot_rows.get(lot_id)
        return copy.copy(row.lot) if row and row.member_id == member_id else None

    async def moved_lots(self, member_id: str, posting_id: str) -> list[tuple[Lot, int]]:
        moved = []
        for m in self.movement_rows:
            if m.member_id == member_id and m.posting_id == posting_id:
                lot = await self.lot(member_id, m.lot_id)
                if lot is not None:
                    moved.append((lot, m.points))
        return moved

    async def lots_from(self, holder: str, origin: str) -> list[Lot]:
        rows = self.lot_rows.values()
        return [copy.copy(r.lot) for r in rows if r.member_id == holder and r.origin == origin]

    async def expiring_soon(self, member_id: str, until: datetime) -> int:
        return sum(
            lot.remaining
            for lot in self.lots_of(member_id)
            if lot.status is LotStatus.OPEN
            and lot.expires_at is not None
            and lot.expires_at < until
        )

    # --- beside the ledger
    async def order(self, unit: str, order_id: str) -> OrderRecord | None:
        found = self.orders.get((unit, order_id))
        return copy.deepcopy(found) if found else None

    async def claim_order(self, order: OrderRecord) -> bool:
        if (order.unit, order.order_id) in self.orders:
            return False
        self.orders[(order.unit, order.order_id)] = copy.deepcopy(order)
        return True

    async def claim_orders(self, orders: Sequence[OrderRecord]) -> set[tuple[str, str]]:
        return {(o.unit, o.order_id) for o in orders if await self.claim_order(o)}

    async def save_order(self, order: OrderRecord) -> None:
        stored = self.orders[(order.unit, order.order_id)]
        stored.lines, stored.bonus_reversed = copy.deepcopy(order.lines), order.bonus_reversed

    async def claim_legacy_balances(
        self, unit: str, member_import: str, carries: Sequence[Carry], now: datetime
    ) -> set[str]:
        fresh = set()
        for carry in carries:
            key = (unit, carry.balance.legacy_key)
            if key not in self.legacy_balances or self.legacy_balances[key].posting_id is None:
                self.legacy_balances[key] = carry
                fresh.add(carry.balance.legacy_key)
        return fresh

    async def claim_partner_reference(
        self, partner: str, reference: str, member_id: str, posting_id: str
    ) -> str | None:
        earlier = self.partner_references.get((partner, reference))
        if earlier is None:
            self.partner_references[(partner, reference)] = posting_id
        return earlier

    async def activity(self, unit: str, activity_id: str) -> RecordedActivity | None:
        found = self.activities.get((unit, activity_id))
        return copy.deepcopy(found) if found else None

    async def claim_activity(self, activity: RecordedActivity) -> bool:
        if (activity.unit, activity.activity_id) in self.activities:
            return False
        self.activities[(activity.unit, activity.activity_id)] = copy.deepcopy(activity)
        return True

    async def count_awarded(self, member_id: str, count: Count) -> int:
        held = {member_id}
        while grown := {m for m, a in self.accounts.items() if a.merged_into in held} - held:
            held |= grown
        return sum(
            1
            for a in self.activities.values()
            if a.member_id in held
            and a.activity_type == count.activity_type
            and a.points > 0
            and (count.start is None or count.start <= a.occurred_at)
            and (count.end is None or a.occurred_at < count.end)
            and (count.unit is None or a.unit == count.unit)
            and (
                count.attribute is None
                or a.attributes.get(count.attribute[0]) == count.attribute[1]
            )
        )

    async def referral(self, member_id: str) -> tuple[str, datetime | None] | None:
        found = self.referrals.get(member_id)
        return (found[0], found[1]) if found else None

    async def add_referral(self, member_id: str, referrer_id: str, now: datetime) -> None:
        self.referrals[member_id] = [referrer_id, None]

    async def mark_referral_rewarded(self, member_id: str, now: datetime) -> None:
        self.referrals[member_id][1] = now

    async def record_tier_change(self, member_id: str, effective_at: datetime, tier: str) -> None:
        self.tier_rows.setdefault((member_id, effective_at), tier)

    async def tier_at(self, member_id: str, at: datetime) -> str:
        known = sorted(
            (t, tier) for (m, t), tier in self.tier_rows.items() if m == member_id and t <= at
        )
        return known[-1][1] if known else ""

    async def tier_changes(
        self, member_ids: Sequence[str]
    ) -> dict[str, list[tuple[datetime, str]]]:
        found: dict[str, list[tuple[datetime, str]]] = {}
        for (member_id, at), tier in sorted(self.tier_rows.items()):
            if member_id in member_ids:
                found.setdefault(member_id, []).append((at, tier))
        return found

    async def record_badge_earned(self, member_id: str, badge: str, at: datetime) -> None:
        held = self.badge_rows.setdefault(member_id, [])
        if not any(h.badge == badge and h.held_from == at for h in held):
            held.append(Holding(badge, at))

    async def record_badge_revoked(self, member_id: str, badge: str, at: datetime) -> None:
        self.badge_rows[member_id] = [
            dataclasses.replace(h, held_until=at)
            if h.badge == badge and h.held_from <= at and h.held_at(at)
            else h
            for h in self.badge_rows.get(member_id, [])
        ]

    async def copy_badges(self, from_member: str, to_member: str) -> None:
        held = self.badge_rows.setdefault(to_member, [])
        for h in self.badge_rows.get(from_member, []):
            if not any((o.badge, o.held_from) == (h.badge, h.held_from) for o in held):
                held.append(h)

    async def badges_at(self, member_id: str, at: datetime) -> frozenset[str]:
        return badges_held(self.badge_rows.get(member_id, []), at)

    async def badge_holdings(self, member_ids: Sequence[str]) -> dict[str, list[Holding]]:
        return {
            m: sorted(self.badge_rows[m], key=lambda h: h.held_from)
            for m in member_ids
            if self.badge_rows.get(m)
        }

    # --- jobs and settlement
    async def members_with_due_pending(self, as_of: datetime, limit: int) -> list[str]:
        due = {
            r.member_id
            for r in self.lot_rows.values()
            if r.lot.status is LotStatus.PENDING
            and r.lot.available_at
            and r.lot.available_at <= as_of
        }
        return sorted(due)[:limit]

    async def due_pending_lots(self, member_id: str, as_of: datetime) -> list[Lot]:
        return [
            lot
            for lot in self.lots_of(member_id)
            if lot.status is LotStatus.PENDING and lot.available_at and lot.available_at <= as_of
        ]

    async def members_with_expired_lots(self, as_of: datetime, limit: int) -> list[str]:
        due = {
            r.member_id
            for r in self.lot_rows.values()
            if r.lot.status is LotStatus.OPEN
            and r.lot.remaining > 0
            and r.lot.expires_at is not None
            and r.lot.expires_at <= as_of
        }
        return sorted(due)[:limit]

    async def count_members_with_due_pending(self, as_of: datetime) -> int:
        return len(await self.members_with_due_pending(as_of, len(self.lot_rows) + 1))

    async def count_members_with_expired_lots(self, as_of: datetime) -> int:
        return len(await self.members_with_expired_lots(as_of, len(self.lot_rows) + 1))

    async def members_after(self, after: str | None, limit: int) -> list[str]:
        return sorted(m for m in self.accounts if after is None or m > after)[:limit]

    async def count_members_after(self, after: str | None) -> int:
        return len(await self.members_after(after, len(self.accounts)))

    async def ledgers(
        self, member_ids: Sequence[str]
    ) -> dict[str, tuple[list[LedgerPosting], list[LotMovement]]]:
        found: dict[str, tuple[list[LedgerPosting], list[LotMovement]]] = {
            m: ([], []) for m in member_ids
        }
        for p in self.postings:
            if p.member_id in found:
                found[p.member_id][0].append(
                    LedgerPosting(
                        p.posting_id, p.kind, p.unit, p.points, p.posted_at, p.occurred_at
                    )
                )
        for m in self.movement_rows:
            if m.member_id in found:
                lot = self.lot_rows[m.lot_id].lot
                found[m.member_id][1].append(
                    LotMovement(
                        m.posting_id,
                        m.lot_id,
                        m.earned_unit,
                        m.unit,
                        m.points,
                        m.at,
                        lot.expires_at,
                    )
                )
        return found

    async def settlement(self, start: datetime, end: datetime) -> dict[str, Any]:
        in_period = [p for p in self.postings if start <= p.posted_at < end]
        kinds = {(p.member_id, p.posting_id): p for p in in_period}
        by_unit_kind: dict[tuple[str, PostingKind, bool], int] = {}
        for p in in_period:
            key = (p.unit, p.kind, p.points > 0)
            by_unit_kind[key] = by_unit_kind.get(key, 0) + p.points
        flows: dict[tuple[str, str], int] = {}
        lapsed: dict[str, dict[str, int]] = {"expire": {}, "erasure_forfeit": {}}
        for m in self.movement_rows:
            posting = kinds.get((m.member_id, m.posting_id))
            if posting is None:
                continue
            if posting.kind in REDEEMING or (
                posting.kind is PostingKind.PARTNER_EXCHANGE_REVERSE and posting.points > 0
            ):
                key2 = (m.earned_unit, m.unit)
                flows[key2] = flows.get(key2, 0) - m.points
            if posting.kind.value in lapsed:
                units = lapsed[posting.kind.value]
                units[m.earned_unit] = units.get(m.earned_unit, 0) - m.points
        return {
            "by_unit_kind": [(u, k, p) for (u, k, _), p in by_unit_kind.items()],
            "flows": [(e, r, p) for (e, r), p in flows.items()],
            "expired": lapsed["expire"],
            "forfeited": lapsed["erasure_forfeit"],
            "total": sum(p.points for p in in_period),
        }


class FakeUnitOfWork:
    """cosmicpython's FakeUnitOfWork: one ledger across transactions; `published` holds the
    events handed to the outbox by each commit."""

    def __init__(self, ledger: FakeLedger | None = None) -> None:
        self._ledger = ledger or FakeLedger()
        self.published: list[Event] = []
        self._recorded: list[Event] = []
        self.committed = 0

    @property
    def ledger(self) -> FakeLedger:
        return self._ledger

    async def __aenter__(self) -> Self:
        self._ledger.seen = []
        self._recorded = []
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def record(self, event: Event) -> None:
        self._recorded.append(event)

    async def commit(self) -> None:
        found, self._recorded = self._recorded, []
        for account in self._ledger.seen:
            if account.changes:
                raise RuntimeError(f"account {account.member_id} changed but was not saved")
            found.extend(account.events)
            account.events.clear()
        self.published.extend(found)
        self.committed += 1


class FakeDirectory:
    """Identity as the points service asks it: members it knows, with their state."""

    def __init__(self) -> None:
        self.members: dict[str, tuple[MemberState, str]] = {}

    def register(self, member_id: str, state: str = "active", merged_into: str = "") -> str:
        self.members[member_id] = (MemberState(state), merged_into)
        return member_id

    async def state_of(self, member_id: str) -> tuple[MemberState, str] | None:
        return self.members.get(member_id)
