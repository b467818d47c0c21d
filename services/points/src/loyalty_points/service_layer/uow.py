"""The points service's unit of work: the kit's plus the ledger and referral codes; on commit,
the events the accounts recorded go to the outbox, in the same transaction."""

from __future__ import annotations

from typing import Self

from loyalty_kit.uow import UnitOfWork
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loyalty_points.adapters.events import to_message
from loyalty_points.adapters.programmes import ProgrammeCache
from loyalty_points.adapters.referral_codes import ReferralCodes
from loyalty_points.adapters.repository import SqlLedger
from loyalty_points.domain.events import Event


class PointsUnitOfWork(UnitOfWork):
    ledger: SqlLedger
    referral_codes: ReferralCodes

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
        self.ledger = SqlLedger(self.session, self.programmes)
        self.referral_codes = ReferralCodes(self.session)
        self._recorded: list[Event] = []
        return self

    def record(self, event: Event) -> None:
        """An event no account records (a programme published)."""
        self._recorded.append(event)

    def collect_new_events(self) -> list[Event]:
        found, self._recorded = self._recorded, []
        for account in self.ledger.seen:
            if account.changes:
                raise RuntimeError(f"account {account.member_id} changed but was not saved")
            found.extend(account.events)
            account.events.clear()
        return found

    async def write_events(self) -> None:
        await self.outbox.add_all([to_message(event) for event in self.collect_new_events()])
