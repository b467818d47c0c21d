"""The tiers service's unit of work: the kit's plus the tier store."""

from __future__ import annotations

from typing import Self

from loyalty_kit.uow import UnitOfWork

from loyalty_tiers.adapters.repository import TierStore


class TiersUnitOfWork(UnitOfWork):
    tiers: TierStore

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.tiers = TierStore(self.session)
        return self
