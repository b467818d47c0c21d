"""Members' figures: recomputed in full (on a schedule, at start when there are none, and on
demand) and per member as their events arrive (adapters/member_figures.py says how the two
never lose each other's work)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from loyalty_kit.errors import Aborted

from loyalty_insights.adapters.member_figures import Refreshed
from loyalty_insights.domain.figures import year_before
from loyalty_insights.service_layer.uow import InsightsUnitOfWork


class RefreshRunning(Aborted):
    reason = "REFRESH_RUNNING"


@dataclass(frozen=True)
class RefreshReport:
    as_of: datetime
    members: int
    removed: int
    duration: timedelta


async def _currency(uow: InsightsUnitOfWork, at: datetime) -> str:
    found = await uow.figures.programme_at(at)
    return found[1] if found else ""


async def refresh_figures(uow: InsightsUnitOfWork, now: Callable[[], datetime]) -> RefreshReport:
    """Every member's figures from the facts as of now (the trailing 12 months end then), in
    the unit of work's transaction; RefreshRunning while another replica refreshes."""
    began = time.perf_counter()
    started_at = now()
    if not await uow.member_figures.try_refresh_lock():
        raise RefreshRunning("the members' figures are being refreshed already; try later")
    since = await uow.member_figures.since()
    as_of = now()
    cuts = await uow.member_figures.stage(year_before(as_of), as_of, await _currency(uow, as_of))
    members, removed = await uow.member_figures.write(since)
    refreshed = Refreshed(as_of, members, removed, cuts)
    await uow.member_figures.record_refresh(started_at, now(), refreshed)
    return RefreshReport(
        as_of,
        refreshed.members,
        refreshed.removed,
        timedelta(seconds=time.perf_counter() - began),
    )


async def recompute(uow: InsightsUnitOfWork, member_ids: Iterable[str], now: datetime) -> None:
    """The figures of the members named (of their survivors) in the event's transaction,
    scored against the last refresh's cut points; absorbed and erased members' rows go."""
    ids = sorted({m for m in member_ids if m})
    if ids:
        await uow.member_figures.recompute(ids, year_before(now), now, await _currency(uow, now))


async def needs_first_refresh(uow: InsightsUnitOfWork) -> bool:
    """No refresh yet, and facts to refresh from (a service started over an existing history)."""
    return await uow.member_figures.last_refresh() is None and await uow.member_figures.any_facts()
