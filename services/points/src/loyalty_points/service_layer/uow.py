"""The points service's unit of work: the kit's plus the ledger."""

from __future__ import annotations

from typing import Self

from loyalty_kit.uow import UnitOfWork

from loyalty_points.adapters.repository import Ledger


class PointsUnitOfWork(UnitOfWork):
    ledger: Ledger

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.ledger = Ledger(self.session)
        return self
