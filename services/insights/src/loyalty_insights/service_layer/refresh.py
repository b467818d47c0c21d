"""Members' figures: refreshed on a schedule, at start when there are none, and on demand, and
recomputed per member as their events arrive (adapters/member_figures.py says how the two never
lose each other's work).

A refresh is incremental when it can be: every row is kept current by its events' recomputes,
so what changes without an event is only time. The trailing 12 months move, so the members with
facts between the last refresh's window and the new one are recomputed (the recompute's SQL,
in batches); recency moves (each row keeps its last purchase in the window); and the ranking
among all members moves, so every row is re-ranked from the rows themselves (with the erased
members' metrics, which a full refresh ranks too) and the rows whose recency or scores changed
are written. The result equals a refresh from the facts (tests/insights/
test_incremental_refresh.py). The refresh from the facts stays as the repair: the first one,
one asked for (`full`), when the programme's currency changed since the last one, when the
clock went back, and when the last full one is older than `full_every`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from loyalty_kit.errors import Aborted

from loyalty_insights.adapters.member_figures import Refreshed
from loyalty_insights.adapters.offers import OffersRebuilt
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
    full: bool = True
    written: int = 0  # rows an incremental refresh wrote (a full one: every member's)


async def _currency(uow: InsightsUnitOfWork, at: datetime) -> str:
    found = await uow.figures.programme_at(at)
    return found[1] if found else ""


FULL_EVERY = timedelta(days=7)


async def refresh_figures(
    uow: InsightsUnitOfWork,
    now: Callable[[], datetime],
    full: bool = False,
    full_every: timedelta = FULL_EVERY,
) -> RefreshReport:
    """Every member's figures as of now (the trailing 12 months end then), in the unit of
    work's transaction: incrementally from the rows when it can, from the facts (`full`, or
    when it must); RefreshRunning while another replica refreshes."""
    began = time.perf_counter()
    started_at = now()
    if not await uow.member_figures.try_refresh_lock():
        raise RefreshRunning("the members' figures are being refreshed already; try later")
    since = await uow.member_figures.since()
    as_of = now()
    currency = await _currency(uow, as_of)
    last = await uow.member_figures.last_refresh()
    earliest: datetime | None = None
    latest: datetime | None = None
    if not full and last is not None and last.since is not None and last.as_of <= as_of:
        last_full = await uow.member_figures.last_full_as_of()
        if (
            last_full is not None
            and as_of - last_full < full_every
            and await _currency(uow, last.as_of) == currency
        ):
            windows = await uow.member_figures.windows_since(last.since)
            if windows is not None:  # (None: a row's window is unknown)
                earliest = min(w for w in (windows[0], last.as_of) if w is not None)
                latest = max(w for w in (windows[1], last.as_of) if w is not None)
    refresh_id = await uow.member_figures.next_refresh_id()
    if earliest is None or latest is None:  # from the facts
        cuts = await uow.member_figures.stage(year_before(as_of), as_of, currency)
        members, removed = await uow.member_figures.write(since, refresh_id)
        refreshed = Refreshed(refresh_id, as_of, members, removed, cuts, True, since)
        written = members
    else:
        moved = await uow.member_figures.moved(min(earliest, as_of), max(latest, as_of))
        recomputed = await uow.member_figures.recompute_keeping(
            moved, year_before(as_of), as_of, currency, since
        )
        cuts, members, written, removed = await uow.member_figures.rescore(
            as_of, currency, since, refresh_id, recomputed
        )
        refreshed = Refreshed(refresh_id, as_of, members, removed, cuts, False, since)
    await uow.member_figures.record_refresh(started_at, now(), refreshed)
    return RefreshReport(
        as_of,
        refreshed.members,
        refreshed.removed,
        timedelta(seconds=time.perf_counter() - began),
        refreshed.full,
        written,
    )


async def settle_refresh(
    uows: Callable[[], InsightsUnitOfWork], now: Callable[[], datetime], chunk: int = 500
) -> int:
    """After a refresh committed: the members recomputed while it ran (scored against the cut
    points before it) recomputed again against its cut points, `chunk` members a transaction
    (adapters/member_figures.py says why). Idempotent; how many were."""
    async with uows() as uow:
        last = await uow.member_figures.last_refresh()
        if last is None:
            return 0
        stale = await uow.member_figures.stale_scores(last)
    for i in range(0, len(stale), chunk):
        async with uows() as uow:
            await recompute(uow, stale[i : i + chunk], now())
            await uow.commit()
    return len(stale)


async def rebuild_offers(
    uows: Callable[[], InsightsUnitOfWork], now: Callable[[], datetime], wait: bool = False
) -> OffersRebuilt | None:
    """After a refresh committed: the personalised offers' tables from every use so far and the
    segments just written, in a transaction of their own (at 1,000,000 members they take about
    as long as the refresh, which need not wait for them); None while another replica rebuilds
    (`wait`: after it)."""
    async with uows() as uow:
        if not await uow.offers.rebuild_lock(wait):
            return None
        rebuilt = await uow.offers.rebuild(now())
        await uow.commit()
    return rebuilt


@dataclass
class Touched:
    """The members a batch's events touched, recomputed once when the batch ends; its latest
    moment (each event's recompute would have used its own: the last one's result stands)."""

    members: set[str] = field(default_factory=set)
    now: datetime | None = None

    def add(self, member_ids: Iterable[str], now: datetime) -> None:
        self.members.update(m for m in member_ids if m)
        self.now = now if self.now is None else max(self.now, now)


@contextlib.asynccontextmanager
async def batched(uow: InsightsUnitOfWork) -> AsyncIterator[None]:
    """A consumer's batch of events in one transaction: their facts written set-based at the
    end (adapters/facts.py buffers them) and the figures of every member they touched
    recomputed once, in one set-based pass, before the commit. A recompute is a function of
    the facts, so once per batch over the union of the touched members leaves the rows every
    event's own recompute would have left."""
    touched = Touched()
    uow.touched = touched
    uow.facts.buffer()
    try:
        yield
    finally:
        uow.touched = None
    await uow.facts.flush()
    if touched.now is not None:
        await recompute(uow, touched.members, touched.now)


async def recompute(uow: InsightsUnitOfWork, member_ids: Iterable[str], now: datetime) -> None:
    """The figures of the members named (of their survivors) in the event's transaction,
    scored against the last refresh's cut points; absorbed and erased members' rows go; the
    cohorts' and programme health's stored months move with them (adapters/month_counts.py). In a
    batch (`batched`), the members are noted and recomputed once when the batch ends."""
    if uow.touched is not None:
        uow.touched.add(member_ids, now)
        return
    ids = sorted({m for m in member_ids if m})
    if ids:
        await uow.member_figures.recompute(ids, year_before(now), now, await _currency(uow, now))
        await uow.month_counts.recompute(ids, locked=ids)  # the figures' recompute locked them


async def needs_first_refresh(uow: InsightsUnitOfWork) -> bool:
    """No refresh yet, and facts to refresh from (a service started over an existing history)."""
    return await uow.member_figures.last_refresh() is None and await uow.member_figures.any_facts()
