"""The benefits service's unit of work: the kit's plus its stores."""

from __future__ import annotations

from typing import Self

from loyalty_kit.uow import UnitOfWork

from loyalty_benefits.adapters.repository import (
    Birthdays,
    CatalogueStore,
    Consumptions,
    Coupons,
    MemberTiers,
    Rewards,
)


class BenefitsUnitOfWork(UnitOfWork):
    catalogue: CatalogueStore
    members: MemberTiers
    consumptions: Consumptions
    coupons: Coupons
    rewards: Rewards
    birthdays: Birthdays

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.catalogue = CatalogueStore(self.session)
        self.members = MemberTiers(self.session)
        self.consumptions = Consumptions(self.session)
        self.coupons = Coupons(self.session)
        self.rewards = Rewards(self.session)
        self.birthdays = Birthdays(self.session)
        return self
