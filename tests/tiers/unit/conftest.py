"""Fast use-case tests: the tiers use cases on a fake unit of work (no server, no database)."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from loyalty_tiers.domain.events import TierChanged
from loyalty_tiers.domain.ladder import Totals
from loyalty_tiers.domain.member_tier import MemberTier
from loyalty_tiers.service_layer.activity import record_activity
from loyalty_tiers.service_layer.ladders import publish_ladder

from tests.tiers.ladders import huayue
from tests.tiers.unit.fakes import FakeTierStore, FakeUnitOfWork

T = TypeVar("T")
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
ANN, BOB = "ann", "bob"


class Tiers:
    """The use cases as the servicer and the consumers run them: each in its own unit of work,
    committed; `now` is the clock."""

    def __init__(self) -> None:
        self.store = FakeTierStore()
        self.uow = FakeUnitOfWork(self.store)
        self.now = T0
        self._postings = itertools.count(1)

    def factory(self) -> FakeUnitOfWork:
        return self.uow

    async def __call__(self, use_case: Callable[..., Awaitable[T]], *args: Any) -> T:
        async with self.uow as uow:
            result = await use_case(uow, *args)
            await uow.commit()
        return result

    @property
    def events(self) -> list[TierChanged]:
        return self.uow.published

    def reasons(self, member_id: str | None = None) -> list[tuple[str, str, str]]:
        """(from, to, reason) of the events published, for one member or all."""
        return [
            (e.from_tier, e.to_tier, e.reason)
            for e in self.events
            if member_id is None or e.member_id == member_id
        ]

    def later(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    async def earn(
        self,
        member_id: str,
        spend: int | str,
        *,
        unit: str = "hotel",
        at: datetime | None = None,
        posting: str | None = None,
        order_id: str = "",
    ) -> str:
        """A points posting of this much qualifying spend (negative: a refund), made a moment
        ago (unless `at`), for the unit's `order_id` if given; its id."""
        posting = posting or f"posting-{next(self._postings)}"
        amount = Decimal(spend)
        totals = Totals(amount, int(amount), 1 if amount > 0 else 0)
        occurred = at or self.now - timedelta(seconds=1)
        await self(
            functools.partial(record_activity, order_id=order_id),
            member_id,
            posting,
            occurred,
            unit,
            totals,
            self.now,
        )
        return posting

    def member(self, member_id: str) -> MemberTier:
        return self.store.tables.members[member_id]


@pytest.fixture
async def tiers() -> Tiers:
    """The use cases on a fake unit of work, with Huayue's ladder in force."""
    found = Tiers()
    await found(publish_ladder, huayue())
    return found
