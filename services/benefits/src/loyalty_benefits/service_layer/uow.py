"""The benefits service's unit of work: the kit's plus its stores; the use cases record domain
events on it, and on commit they go to the outbox as the contract's messages, in the same
transaction."""

from __future__ import annotations

from typing import Self

from loyalty_kit.uow import UnitOfWork
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loyalty_benefits.adapters.events import to_message
from loyalty_benefits.adapters.stores.birthdays import Birthdays
from loyalty_benefits.adapters.stores.catalogue import CatalogueCache, CatalogueStore
from loyalty_benefits.adapters.stores.consumptions import Consumptions
from loyalty_benefits.adapters.stores.coupons import Coupons
from loyalty_benefits.adapters.stores.issuances import CouponIssuances
from loyalty_benefits.adapters.stores.members import MemberStates, MemberTiers
from loyalty_benefits.adapters.stores.offers import CouponOffers
from loyalty_benefits.adapters.stores.rewards import Rewards
from loyalty_benefits.domain.events import Event


class BenefitsUnitOfWork(UnitOfWork):
    catalogue: CatalogueStore
    members: MemberTiers
    consumptions: Consumptions
    coupons: Coupons
    issuances: CouponIssuances
    rewards: Rewards
    birthdays: Birthdays
    member_states: MemberStates
    offers: CouponOffers

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        namespace: str,
        *,
        read_only: bool = False,
        catalogue: CatalogueCache | None = None,
    ) -> None:
        super().__init__(sessions, namespace, read_only=read_only)
        self._catalogue = catalogue  # the service's: the catalogue parsed once per version

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.catalogue = CatalogueStore(self.session, self._catalogue)
        self.members = MemberTiers(self.session)
        self.consumptions = Consumptions(self.session)
        self.coupons = Coupons(self.session)
        self.issuances = CouponIssuances(self.session)
        self.rewards = Rewards(self.session)
        self.birthdays = Birthdays(self.session)
        self.member_states = MemberStates(self.session)
        self.offers = CouponOffers(self.session)
        self._recorded: list[Event] = []
        return self

    def record(self, event: Event) -> None:
        self._recorded.append(event)

    def collect_new_events(self) -> list[Event]:
        found, self._recorded = self._recorded, []
        return found

    async def write_events(self) -> None:
        await self.outbox.add_all([to_message(event) for event in self.collect_new_events()])
