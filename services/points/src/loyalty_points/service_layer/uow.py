"""The points service's unit of work: the kit's plus the ledger."""

from __future__ import annotations

from typing import Self

from loyalty_kit.uow import UnitOfWork
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loyalty_points.adapters.repository import Ledger, ProgrammeCache


class PointsUnitOfWork(UnitOfWork):
    ledger: Ledger

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        namespace: str,
        *,
        read_only: bool = False,
        programmes: ProgrammeCache | None = None,
    ) -> None:
        super().__init__(sessions, namespace, read_only=read_only)
        # Shared by the units of work of one process (see ProgrammeCache); none: no caching.
        self.programmes = programmes

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.ledger = Ledger(self.session, self.programmes)
        return self
