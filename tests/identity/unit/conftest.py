"""Fast use-case tests: the identity use cases on a fake unit of work (no server, no
database)."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from loyalty_identity.domain.events import Event
from loyalty_identity.domain.member import ConsentPurpose, Member, Profile
from loyalty_identity.service_layer import handlers
from loyalty_identity.service_layer.commands import ConsentGiven, Operator, RawIdentity, Register

from tests.identity.unit.fakes import FakeMembers, FakeUnitOfWork

T = TypeVar("T")
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
DESK = Operator(unit="mall", client_id="service-desk")


def phone(value: str) -> RawIdentity:
    return RawIdentity("phone", value)


class Identity:
    """The use cases as the servicer runs them: each in its own unit of work, committed;
    `now` is the clock."""

    def __init__(self) -> None:
        self.store = FakeMembers()
        self.uow = FakeUnitOfWork(self.store)
        self.now = T0
        self._phones = itertools.count(20000000)

    async def __call__(self, use_case: Callable[..., Awaitable[T]], *args: Any) -> T:
        async with self.uow as uow:
            result = await use_case(uow, *args)
            await uow.commit()
        return result

    @property
    def events(self) -> list[Event]:
        return self.uow.published

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.events]

    def row(self, member_id: str) -> Member:
        return self.store.tables.members[member_id]

    def later(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def new_phone(self) -> str:
        return f"138{next(self._phones):08d}"

    async def register(self, *raw: RawIdentity, unit: str = "mall", **profile: Any) -> Member:
        command = Register(
            identities=list(raw) or [phone(self.new_phone())],
            unit=unit,
            channel="CHANNEL_POS",
            profile=Profile(**profile),
            consents=[ConsentGiven(ConsentPurpose.MARKETING_SMS, True)],
        )
        done = await self(handlers.register, command, self.now)
        return done.member


@pytest.fixture
def identity() -> Identity:
    return Identity()
