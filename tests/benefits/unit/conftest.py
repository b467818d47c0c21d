"""Fast use-case tests: the benefits use cases on a fake unit of work (no server, no database),
with Huayue's catalogue published."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from loyalty_benefits.domain.coupons import Coupon
from loyalty_benefits.domain.events import Event
from loyalty_benefits.entrypoints.convert import catalogue_from
from loyalty_benefits.service_layer import handlers
from loyalty_devstack.demo import huayue_catalogue

from tests.benefits.unit.fakes import FakeBenefitsStore, FakeUnitOfWork

T = TypeVar("T")
T0 = datetime(2026, 3, 2, 4, tzinfo=UTC)  # noon in Shanghai, a Monday
YEAR_END = datetime(2027, 3, 1, tzinfo=UTC)
ANN, BOB = "00000000-0000-0000-0000-0000000000a1", "00000000-0000-0000-0000-0000000000b2"


class Benefits:
    """The use cases as the servicer and the consumers run them: each in its own unit of
    work, committed; `now` is the clock."""

    def __init__(self) -> None:
        self.now = T0
        self.store = FakeBenefitsStore(T0)
        self.uow = FakeUnitOfWork(self.store)

    async def __call__(self, use_case: Callable[..., Awaitable[T]], *args: Any) -> T:
        async with self.uow as uow:
            result = await use_case(uow, *args)
            await uow.commit()
        return result

    def uow_factory(self) -> FakeUnitOfWork:
        return self.uow

    @property
    def events(self) -> list[Event]:
        return self.uow.published

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.events]

    def later(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    async def tier(self, member_id: str, to: str, before: str = "basic") -> None:
        """The tiers service announced the member's tier (TierChanged)."""
        await self(handlers.on_tier_changed, member_id, before, to, self.now, YEAR_END, self.now)

    def coupons(self, member_id: str) -> list[Coupon]:
        return [r.coupon for r in self.store.tables.coupons if r.coupon.member_id == member_id]


@pytest.fixture
async def benefits() -> Benefits:
    found = Benefits()
    await found(handlers.publish_catalogue, catalogue_from(huayue_catalogue()))
    return found
