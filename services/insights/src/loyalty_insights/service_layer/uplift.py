"""A journey's uplift: its treatment and control groups read from the facts, compared."""

from __future__ import annotations

from datetime import datetime

from loyalty_insights.domain.uplift import JourneyUplift
from loyalty_insights.service_layer.uow import InsightsUnitOfWork


async def journey_uplift(
    uow: InsightsUnitOfWork, journey_id: str, window_days: int, now: datetime
) -> JourneyUplift:
    """A journey no member entered (or one insights has not heard of) has two empty groups."""
    treatment, control = await uow.journeys.groups(journey_id, window_days, now)
    return JourneyUplift(journey_id, window_days, treatment, control)
