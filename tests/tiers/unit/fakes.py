"""An in-memory tier store and unit of work (cosmicpython's FakeUnitOfWork): the use cases run
on it as they do on PostgreSQL, without a server. Each unit of work that is left without a
commit rolls its changes back, so a refusal can be shown to store nothing."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from loyalty_tiers.domain.events import TierChanged
from loyalty_tiers.domain.grants import Grant, GrantState
from loyalty_tiers.domain.ladder import Ladder, Totals
from loyalty_tiers.domain.legacy import Match
from loyalty_tiers.domain.member_tier import HistoryEntry, MemberTier
from loyalty_tiers.domain.orders import (
    ORDER_POINTS,
    ORDER_VISITS,
    OrderActivity,
    imported_event_id,
)

from tests.support.fake_work import SnapshotWork


@dataclass
class Posting:
    member_id: str
    occurred_at: datetime
    unit: str
    totals: Totals
    origin: str | None


@dataclass
class Order:
    member_id: str
    grant_id: str
    months: int
    origin: str | None = None


@dataclass
class Merge:
    survivor: str
    at: datetime
    before: tuple[MemberTier | None, MemberTier | None]


@dataclass
class Tables:
    ladders: list[Ladder] = field(default_factory=list)
    activity: dict[tuple[str, str], Posting] = field(default_factory=dict)
    members: dict[str, MemberTier] = field(default_factory=dict)  # rows: no grants
    grants: dict[str, tuple[Grant, str | None]] = field(default_factory=dict)  # id: (, origin)
    orders: dict[tuple[str, str], Order] = field(default_factory=dict)
    merged: dict[str, Merge] = field(default_factory=dict)
    erased: dict[str, datetime] = field(default_factory=dict)
    history: list[tuple[int, HistoryEntry]] = field(default_factory=list)
    legacy_tiers: dict[tuple[str, str], Match] = field(default_factory=dict)
    # (unit, order id) -> (the activity's event id, the import that brought it or '')
    counted_orders: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    upgrades_due: list[tuple[str, datetime]] = field(default_factory=list)  # (member, marked at)


def _row(member: MemberTier) -> MemberTier:
    return MemberTier(
        member.member_id, member.tier, member.since, member.tier_year_end, member.effective
    )


class FakeTierStore:
    def __init__(self) -> None:
        self.tables = Tables()
        self._events: list[TierChanged] = []

    # -- the ladder -------------------------------------------------------------------------

    async def ladder(self) -> Ladder | None:
        return copy.deepcopy(self.tables.ladders[-1]) if self.tables.ladders else None

    async def add_ladder(self, ladder: Ladder) -> int:
        version = len(self.tables.ladders) + 1
        self.tables.ladders.append(replace(copy.deepcopy(ladder), version=version))
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
        if order_id:
            if (unit, order_id) in self.tables.counted_orders:
                totals = totals.order_counted_before()
            else:
                self.tables.counted_orders[unit, order_id] = (posting_id, "")
        if (member_id, posting_id) in self.tables.activity:
            return False
        self.tables.activity[member_id, posting_id] = Posting(
            member_id, occurred_at, unit, totals, origin
        )
        return True

    async def record_orders(
        self, unit: str, order_import: str, orders: Sequence[OrderActivity]
    ) -> list[OrderActivity]:
        recorded = []
        for order in orders:
            if (unit, order.order_id) in self.tables.counted_orders:
                continue
            event_id = imported_event_id(unit, order.order_id)
            self.tables.counted_orders[unit, order.order_id] = (event_id, order_import)
            if (order.member_id, event_id) in self.tables.activity:
                continue
            totals = Totals(order.spend, ORDER_POINTS, ORDER_VISITS)
            self.tables.activity[order.member_id, event_id] = Posting(
                order.member_id, order.occurred_at, unit, totals, order.origin
            )
            recorded.append(order)
        return recorded

    async def mark_to_judge(self, member_ids: Sequence[str], now: datetime) -> None:
        self.tables.upgrades_due.extend((m, now) for m in member_ids)

    async def take_to_judge(self, limit: int, marked_before: datetime) -> list[str]:
        latest: dict[str, datetime] = {}
        for member_id, at in self.tables.upgrades_due:
            latest[member_id] = max(at, latest.get(member_id, at))
        taken = sorted(m for m, at in latest.items() if at <= marked_before)[:limit]
        self.tables.upgrades_due = [
            (m, at) for m, at in self.tables.upgrades_due if m not in taken or at > marked_before
        ]
        return taken

    async def activity(self, member_id: str, since: datetime, until: datetime) -> dict[str, Totals]:
        return (await self.activities([(member_id, since, until)])).get(member_id, {})

    async def activities(
        self, windows: Sequence[tuple[str, datetime, datetime]]
    ) -> dict[str, dict[str, Totals]]:
        found: dict[str, dict[str, Totals]] = {}
        for member_id, since, until in windows:
            for posting in self.tables.activity.values():
                if posting.member_id == member_id and since <= posting.occurred_at <= until:
                    units = found.setdefault(member_id, {})
                    units[posting.unit] = units.get(posting.unit, Totals()) + posting.totals
        return found

    async def counted(self, member_id: str, posting_ids: Sequence[str]) -> set[str]:
        return {p for p in posting_ids if (member_id, p) in self.tables.activity}

    # -- members' tiers ---------------------------------------------------------------------

    def _loaded(self, member_id: str) -> MemberTier:
        member = _row(self.tables.members[member_id])
        member.grants = self._active([member_id]).get(member_id, [])
        return member

    async def member_tier(self, member_id: str, *, lock: bool = False) -> MemberTier | None:
        return self._loaded(member_id) if member_id in self.tables.members else None

    async def ensure_member(self, member_id: str, entry_tier: str, now: datetime) -> MemberTier:
        if member_id not in self.tables.members:
            self.tables.members[member_id] = MemberTier(member_id, entry_tier, now, None)
        return self._loaded(member_id)

    async def ensure_members(
        self, member_ids: Sequence[str], entry_tier: str, now: datetime
    ) -> dict[str, MemberTier]:
        for member_id in member_ids:
            await self.ensure_member(member_id, entry_tier, now)
        return await self.lock_members(member_ids)

    async def lock_members(self, member_ids: Sequence[str]) -> dict[str, MemberTier]:
        return {m: self._loaded(m) for m in sorted(member_ids) if m in self.tables.members}

    async def members_due(self, as_of: datetime, limit: int) -> list[MemberTier]:
        due = [
            m
            for m in self.tables.members.values()
            if m.tier_year_end is not None and m.tier_year_end <= as_of
        ]
        due.sort(key=lambda m: m.tier_year_end or as_of)
        return [self._loaded(m.member_id) for m in due[:limit]]

    async def count_members_due(self, as_of: datetime) -> int:
        return len(await self.members_due(as_of, len(self.tables.members) + 1))

    async def save(self, members: Sequence[MemberTier]) -> None:
        for member in members:
            self.tables.members[member.member_id] = _row(member)
            for grant, added in member.changed_grants.values():
                origin = None if added else self.tables.grants[grant.grant_id][1]
                self.tables.grants[grant.grant_id] = (self._stored(grant), origin)
            for order in member.new_orders:
                self.tables.orders[order.unit, order.order_id] = Order(
                    order.member_id, order.grant_id, order.months
                )
            for entry in member.new_history:
                self.tables.history.append((len(self.tables.history) + 1, entry))
            self._events.extend(member.events)
            member.changed_grants.clear()
            member.new_orders.clear()
            member.new_history.clear()
            member.events.clear()

    def collect_events(self) -> list[TierChanged]:
        events, self._events = self._events, []
        return events

    # -- merges and erasure -----------------------------------------------------------------

    async def merged_into(self, member_id: str) -> str | None:
        merge = self.tables.merged.get(member_id)
        return None if merge is None else merge.survivor

    async def record_merge(
        self,
        absorbed: str,
        survivor: str,
        at: datetime,
        before: tuple[MemberTier | None, MemberTier | None] = (None, None),
    ) -> None:
        kept = tuple(None if m is None else _row(m) for m in before)
        self.tables.merged.setdefault(absorbed, Merge(survivor, at, (kept[0], kept[1])))
        for merge in self.tables.merged.values():
            if merge.survivor == absorbed:
                merge.survivor = survivor

    async def move_member(self, absorbed: str, survivor: str) -> None:
        for posting_id, posting in list(self.tables.activity.items()):
            if posting.member_id == absorbed:
                del self.tables.activity[posting_id]
                posting.origin = posting.origin or absorbed
                posting.member_id = survivor
                self.tables.activity[survivor, posting_id[1]] = posting
        for grant_id, (grant, origin) in self.tables.grants.items():
            if grant.member_id == absorbed:
                grant.member_id = survivor
                self.tables.grants[grant_id] = (grant, origin or absorbed)
        for order in self.tables.orders.values():
            if order.member_id == absorbed:
                order.member_id, order.origin = survivor, order.origin or absorbed
        self.tables.members.pop(absorbed, None)

    async def forget_merge(
        self, restored: str
    ) -> tuple[MemberTier | None, MemberTier | None] | None:
        merge = self.tables.merged.pop(restored, None)
        if merge is None:
            return None
        return merge.before

    async def give_back(self, survivor: str, restored: str) -> None:
        for key, posting in list(self.tables.activity.items()):
            if posting.member_id == survivor and posting.origin == restored:
                del self.tables.activity[key]
                posting.member_id, posting.origin = restored, None
                self.tables.activity[restored, key[1]] = posting
        for grant_id, (grant, origin) in self.tables.grants.items():
            if grant.member_id == survivor and origin == restored:
                grant.member_id = restored
                self.tables.grants[grant_id] = (grant, None)
        for order in self.tables.orders.values():
            if order.member_id == survivor and order.origin == restored:
                order.member_id, order.origin = restored, None

    async def erased(self, member_id: str) -> bool:
        return member_id in self.tables.erased

    async def record_erasure(self, member_id: str, at: datetime) -> None:
        self.tables.erased.setdefault(member_id, at)

    async def erased_among(self, member_ids: Sequence[str]) -> set[str]:
        return {m for m in member_ids if m in self.tables.erased}

    async def survivors_of(self, member_ids: Sequence[str]) -> dict[str, str]:
        return {m: self.tables.merged[m].survivor for m in member_ids if m in self.tables.merged}

    # -- imported members -------------------------------------------------------------------

    async def claim_legacy_tiers(
        self, unit: str, member_import: str, matches: Sequence[Match], now: datetime
    ) -> set[str]:
        fresh = set()
        for match in matches:
            key = (unit, match.entry.legacy_key)
            earlier = self.tables.legacy_tiers.get(key)
            if earlier is None or earlier.grant_id is None:
                self.tables.legacy_tiers[key] = match
                fresh.add(match.entry.legacy_key)
        return fresh

    # -- reads ------------------------------------------------------------------------------

    async def distribution(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for member in self.tables.members.values():
            if member.member_id not in self.tables.erased:
                counts[member.effective] = counts.get(member.effective, 0) + 1
        return counts

    async def history(
        self, member_id: str, before_seq: int | None, limit: int
    ) -> list[tuple[int, HistoryEntry]]:
        rows = [
            (seq, e)
            for seq, e in self.tables.history
            if e.member_id == member_id and (before_seq is None or seq < before_seq)
        ]
        return sorted(rows, key=lambda r: r[0], reverse=True)[:limit]

    # -- grants -----------------------------------------------------------------------------

    def _stored(self, grant: Grant) -> Grant:
        return replace(grant, order_ids=[])

    def _with_orders(self, grant: Grant) -> Grant:
        orders = [
            order_id
            for (_, order_id), order in self.tables.orders.items()
            if order.grant_id == grant.grant_id
        ]
        return replace(grant, order_ids=orders)

    def _active(self, member_ids: Sequence[str]) -> dict[str, list[Grant]]:
        found: dict[str, list[Grant]] = {}
        for grant, _ in self.tables.grants.values():
            if grant.member_id in member_ids and grant.state is GrantState.ACTIVE:
                found.setdefault(grant.member_id, []).append(self._with_orders(grant))
        return found

    async def grant(self, member_id: str, grant_id: str) -> Grant | None:
        stored = self.tables.grants.get(grant_id)
        if stored is None or stored[0].member_id != member_id:
            return None
        return self._with_orders(stored[0])

    async def active_grants(self, member_ids: Sequence[str]) -> dict[str, list[Grant]]:
        return self._active(member_ids)

    async def list_grants(
        self, member_id: str, before: tuple[datetime, str] | None, limit: int
    ) -> list[tuple[datetime, Grant]]:
        rows = [
            (g.starts_at, self._with_orders(g))
            for g, _ in self.tables.grants.values()
            if g.member_id == member_id and (before is None or (g.starts_at, g.grant_id) < before)
        ]
        return sorted(rows, key=lambda r: (r[0], r[1].grant_id), reverse=True)[:limit]

    async def membership_order(self, unit: str, order_id: str) -> tuple[str, str] | None:
        order = self.tables.orders.get((unit, order_id))
        return None if order is None else (order.member_id, order.grant_id)

    async def grants_due(self, as_of: datetime, limit: int) -> list[str]:
        due = sorted(
            (g for g, _ in self.tables.grants.values()),
            key=lambda g: g.ends_at,
        )
        due = [g for g in due if g.state is GrantState.ACTIVE and g.ends_at <= as_of][:limit]
        return list(dict.fromkeys(g.member_id for g in due))

    async def count_grants_due(self, as_of: datetime) -> int:
        return sum(
            g.state is GrantState.ACTIVE and g.ends_at <= as_of
            for g, _ in self.tables.grants.values()
        )


class FakeUnitOfWork(SnapshotWork):
    """One transaction on the fake store: `published` holds the events of every commit."""

    def __init__(self, store: FakeTierStore | None = None) -> None:
        self.store: FakeTierStore = store or FakeTierStore()
        super().__init__(self.store)
        self.published: list[TierChanged] = []

    @property
    def tiers(self) -> FakeTierStore:
        return self.store

    def begin(self) -> None:
        self.store.collect_events()  # what was recorded and not committed is dropped

    def publish(self) -> None:
        self.published.extend(self.store.collect_events())
