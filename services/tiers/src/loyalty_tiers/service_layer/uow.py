"""The tiers service's unit of work: the port the use cases need (`AbstractUnitOfWork`, with
its `TierRepository`), and the kit's PostgreSQL unit of work plus the tier store.

The use cases save `MemberTier` aggregates; the repository keeps their events and the unit of
work writes them to the outbox, as the contract's messages, when it commits (so they commit
with the change, or not at all). Fast tests run the same use cases on a fake of this port.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, Self

from loyalty_kit.uow import Transaction, UnitOfWork
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loyalty_tiers.adapters.events import to_message
from loyalty_tiers.adapters.repository import LadderCache, TierStore
from loyalty_tiers.domain.events import TierChanged
from loyalty_tiers.domain.grants import Grant
from loyalty_tiers.domain.ladder import Ladder, Totals
from loyalty_tiers.domain.legacy import Match
from loyalty_tiers.domain.member_tier import HistoryEntry, MemberTier
from loyalty_tiers.domain.orders import OrderActivity


class TierRepository(Protocol):
    """Ladders, activity (points postings and imported orders), members' tiers (aggregates
    with their grants), merges, history, imported members' legacy tiers."""

    async def ladder(self) -> Ladder | None: ...
    async def add_ladder(self, ladder: Ladder) -> int: ...

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
    ) -> bool: ...
    async def record_orders(
        self, unit: str, order_import: str, orders: Sequence[OrderActivity]
    ) -> list[OrderActivity]: ...
    async def mark_to_judge(self, member_ids: Sequence[str], now: datetime) -> None: ...
    async def take_to_judge(self, limit: int, marked_before: datetime) -> list[str]: ...
    async def activity(
        self, member_id: str, since: datetime, until: datetime
    ) -> dict[str, Totals]: ...
    async def activities(
        self, windows: Sequence[tuple[str, datetime, datetime]]
    ) -> dict[str, dict[str, Totals]]: ...
    async def counted(self, member_id: str, posting_ids: Sequence[str]) -> set[str]: ...

    async def member_tier(self, member_id: str, *, lock: bool = False) -> MemberTier | None: ...
    async def ensure_member(self, member_id: str, entry_tier: str, now: datetime) -> MemberTier: ...
    async def lock_members(self, member_ids: Sequence[str]) -> dict[str, MemberTier]: ...
    async def ensure_members(
        self, member_ids: Sequence[str], entry_tier: str, now: datetime
    ) -> dict[str, MemberTier]: ...
    async def members_due(self, as_of: datetime, limit: int) -> list[MemberTier]: ...
    async def count_members_due(self, as_of: datetime) -> int: ...
    async def save(self, members: Sequence[MemberTier]) -> None: ...
    def collect_events(self) -> list[TierChanged]: ...

    async def merged_into(self, member_id: str) -> str | None: ...
    async def record_merge(
        self,
        absorbed: str,
        survivor: str,
        at: datetime,
        before: tuple[MemberTier | None, MemberTier | None] = (None, None),
    ) -> None: ...
    async def move_member(self, absorbed: str, survivor: str) -> None: ...
    async def forget_merge(
        self, restored: str
    ) -> tuple[MemberTier | None, MemberTier | None] | None: ...
    async def give_back(self, survivor: str, restored: str) -> None: ...
    async def erased(self, member_id: str) -> bool: ...
    async def erased_among(self, member_ids: Sequence[str]) -> set[str]: ...
    async def survivors_of(self, member_ids: Sequence[str]) -> dict[str, str]: ...
    async def claim_legacy_tiers(
        self, unit: str, member_import: str, matches: Sequence[Match], now: datetime
    ) -> set[str]: ...
    async def record_erasure(self, member_id: str, at: datetime) -> None: ...

    async def distribution(self) -> dict[str, int]: ...
    async def history(
        self, member_id: str, before_seq: int | None, limit: int
    ) -> list[tuple[int, HistoryEntry]]: ...

    async def grant(self, member_id: str, grant_id: str) -> Grant | None: ...
    async def active_grants(self, member_ids: Sequence[str]) -> dict[str, list[Grant]]: ...
    async def list_grants(
        self, member_id: str, before: tuple[datetime, str] | None, limit: int
    ) -> list[tuple[datetime, Grant]]: ...
    async def membership_order(self, unit: str, order_id: str) -> tuple[str, str] | None: ...
    async def grants_due(self, as_of: datetime, limit: int) -> list[str]: ...
    async def count_grants_due(self, as_of: datetime) -> int: ...


class AbstractUnitOfWork(Transaction, Protocol):
    """One transaction: `async with factory() as uow: ...; await uow.commit()`."""

    @property
    def tiers(self) -> TierRepository: ...


class TiersUnitOfWork(UnitOfWork):
    tiers: TierStore

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        namespace: str,
        *,
        read_only: bool = False,
        ladders: LadderCache | None = None,
    ) -> None:
        super().__init__(sessions, namespace, read_only=read_only)
        self._ladders = ladders  # the service's: the ladder parsed once per version

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.tiers = TierStore(self.session, self._ladders)
        return self

    async def write_events(self) -> None:
        await self.outbox.add_many([to_message(e) for e in self.tiers.collect_events()])
