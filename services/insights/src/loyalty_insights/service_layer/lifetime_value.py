"""Lifetime value's use cases: a fit asked for (by hand or by the schedule), a fit read, and
the figure read from the predictions of the last successful fit."""

from __future__ import annotations

import uuid
from datetime import datetime

from loyalty_insights.domain.clv_fits import (
    DECILES,
    FitNotFound,
    FitState,
    LifetimeValue,
    LifetimeValueFit,
)
from loyalty_insights.service_layer.figures import known_unit
from loyalty_insights.service_layer.uow import InsightsUnitOfWork


async def ask_for_fit(
    uow: InsightsUnitOfWork, as_of: datetime, holdout_days: int, now: datetime, *, scheduled: bool
) -> LifetimeValueFit:
    """A fit waiting for a replica's fitter (one fit at a time across replicas)."""
    fit = LifetimeValueFit(
        fit_id=str(uuid.uuid4()),
        scheduled=scheduled,
        state=FitState.PENDING,
        created_at=now,
        as_of=as_of,
        holdout_days=holdout_days,
    )
    await uow.clv.add_fit(fit)
    return fit


async def get_fit(uow: InsightsUnitOfWork, fit_id: str) -> LifetimeValueFit:
    found = await uow.clv.fit(fit_id)
    if found is None:
        raise FitNotFound(f"no lifetime value fit {fit_id}", metadata={"fit_id": fit_id})
    return found


async def lifetime_value(
    uow: InsightsUnitOfWork, unit: str, after: tuple[str, str] | None, page_size: int
) -> LifetimeValue:
    """The members' (the unit's: those active there, as their figures keep it) lifetime value
    as the last successful fit left it: totals, deciles of predicted value, and a page of
    members by predicted value."""
    await known_unit(uow, unit)
    fit = await uow.clv.last_succeeded()
    totals = await uow.clv.totals(unit)
    deciles = await uow.clv.deciles(unit, DECILES)
    members = await uow.clv.page(unit, after, page_size + 1)
    last = None
    if len(members) > page_size:
        edge = members[page_size - 1]
        last = (str(edge.predicted_value), edge.member_id)
    return LifetimeValue(fit, totals, deciles, members[:page_size], last)
