"""The engagement service's unit of work: the kit's, with the journeys' and the channels'
stores on the same transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Self

from loyalty_kit.uow import UnitOfWork

from loyalty_engagement.adapters.challenges import ChallengeStore
from loyalty_engagement.adapters.channels import ChannelStore, TransactionalStore
from loyalty_engagement.adapters.journeys import JourneyStore
from loyalty_engagement.adapters.timing import TimingStore
from loyalty_engagement.domain.challenges import Occurrence
from loyalty_engagement.domain.journeys import TriggerEvent


class EngagementUnitOfWork(UnitOfWork):
    journeys: JourneyStore
    challenges: ChallengeStore
    channels: ChannelStore
    transactional: TransactionalStore  # the development sink of transactional messages
    timing: TimingStore  # waiting entries, budgets, sweeps
    # A consumer's batch (entrypoints/consumers.py): its purchases, handled together at its end.
    purchases: list[TriggerEvent] | None = None
    counted_purchases: list[Occurrence] | None = None  # the challenges' consumer's, the same way
    # The batch's lot movements (lot, member, points, expiry), kept together at its end.
    lots: list[tuple[str, str, int, datetime]] | None = None

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.journeys = JourneyStore(self.session)
        self.challenges = ChallengeStore(self.session)
        self.channels = ChannelStore(self.session)
        self.transactional = TransactionalStore(self.session)
        self.timing = TimingStore(self.session)
        return self
