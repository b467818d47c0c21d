"""The insights service's unit of work: the kit's, with the facts it writes and the figures it
reads on the same transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from loyalty_kit.uow import UnitOfWork

from loyalty_insights.adapters.clv_store import LifetimeValueStore
from loyalty_insights.adapters.facts import FactStore
from loyalty_insights.adapters.figures import FigureRows
from loyalty_insights.adapters.member_figures import MemberFigures
from loyalty_insights.adapters.month_counts import MonthCounts
from loyalty_insights.adapters.offers import OfferStore
from loyalty_insights.adapters.segments import SegmentStore
from loyalty_insights.adapters.uplift import JourneyGroups

if TYPE_CHECKING:
    from loyalty_insights.service_layer.refresh import Touched


class InsightsUnitOfWork(UnitOfWork):
    facts: FactStore
    figures: FigureRows
    clv: LifetimeValueStore
    segments: SegmentStore
    member_figures: MemberFigures
    month_counts: MonthCounts
    offers: OfferStore
    journeys: JourneyGroups
    # In a consumer's batch: the members whose figures are recomputed when it ends.
    touched: Touched | None = None

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.facts = FactStore(self.session)
        self.figures = FigureRows(self.session)
        self.clv = LifetimeValueStore(self.session)
        self.segments = SegmentStore(self.session)
        self.member_figures = MemberFigures(self.session)
        self.month_counts = MonthCounts(self.session)
        self.offers = OfferStore(self.session)
        self.journeys = JourneyGroups(self.session)
        return self
