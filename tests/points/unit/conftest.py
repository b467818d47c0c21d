"""A points service with no server: the use cases over a fake unit of work, a programme built
in memory and a member directory that knows whom it is told."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from loyalty_points.domain.events import Event
from loyalty_points.domain.ledger import Posting
from loyalty_points.domain.money import Amount
from loyalty_points.domain.programme import (
    CurrencyRule,
    Line,
    PartnerRule,
    Programme,
    UnitRule,
)
from loyalty_points.service_layer import earning
from loyalty_points.service_layer.programmes import publish_programme

from tests.points.unit.fakes import FakeDirectory, FakeLedger, FakeUnitOfWork

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def programme() -> Programme:
    return Programme(
        version=0,
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        currencies={
            "CNY": CurrencyRule("CNY", Decimal(1), Decimal("0.01"), Decimal(1)),
            "HKD": CurrencyRule("HKD", Decimal(1), Decimal("0.011"), Decimal("0.92")),
        },
        units={
            "mall": UnitRule("mall", Decimal(1)),
            "hotel": UnitRule("hotel", Decimal(2), pending_days=7),
            "cinema": UnitRule("cinema", Decimal("1.5")),
        },
        tiers={"gold": Decimal("1.25")},
        expiry_months=24,
        transfer_max_per_transfer=20_000,
        transfer_max_per_day=50_000,
        partners={"skyair": PartnerRule("skyair", 10, 8, 1_000, 50_000)},
        referrer_points=500,
        referee_points=200,
    )


@dataclass
class World:
    uow: FakeUnitOfWork = field(default_factory=FakeUnitOfWork)
    directory: FakeDirectory = field(default_factory=FakeDirectory)
    now: datetime = START

    @property
    def ledger(self) -> FakeLedger:
        return self.uow.ledger

    def member(self, state: str = "active", merged_into: str = "") -> str:
        return self.directory.register(str(uuid.uuid4()), state, merged_into)

    def later(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def published(self, kind: type) -> list[Event]:
        return [e for e in self.uow.published if isinstance(e, kind)]

    async def earn(
        self,
        member_id: str,
        unit: str,
        *amounts: str,
        order_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> Posting:
        command = earning.Earn(
            member_id=member_id,
            unit=unit,
            channel="CHANNEL_POS",
            order_id=order_id or f"ord-{uuid.uuid4().hex[:8]}",
            lines=[Line(str(i + 1), Amount("CNY", Decimal(a))) for i, a in enumerate(amounts)],
            occurred_at=occurred_at or self.now,
        )
        async with self.uow as uow:
            posting, _ = await earning.earn(uow, command, self.directory, self.now)
            await uow.commit()
        return posting

    async def balance(self, member_id: str) -> tuple[int, int]:
        account = self.ledger.accounts[member_id]
        return account.available, account.pending


@pytest.fixture
async def world() -> World:
    found = World()
    async with found.uow as uow:
        await publish_programme(uow, programme(), "tests", found.now)
        await uow.commit()
    return found
