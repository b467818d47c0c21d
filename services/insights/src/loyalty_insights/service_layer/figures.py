"""The figures, as use cases over the facts: a period and an optional unit in, the domain's
figures out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from decimal import Decimal

from loyalty_kit.errors import FieldViolation, InvalidArgument

from loyalty_insights.domain import cohorts as cohort_figures
from loyalty_insights.domain import crossunit
from loyalty_insights.domain.cohorts import Cohort, HealthMonth, MonthActivity
from loyalty_insights.domain.crossunit import MonthOfMembers, UnitSpend
from loyalty_insights.domain.figures import year_before
from loyalty_insights.domain.liability import UnitLiability, liabilities, total_of
from loyalty_insights.domain.periods import Period
from loyalty_insights.domain.rfm import (
    RfmCell,
    RfmScore,
    RfmSegment,
    rfm_grid,
    segment_counts,
)
from loyalty_insights.service_layer.uow import InsightsUnitOfWork


@dataclass(frozen=True)
class PointValue:
    version: int
    currency: str
    value: Decimal  # of one point


@dataclass(frozen=True)
class Liability:
    units: list[UnitLiability]
    total: UnitLiability
    point_value: PointValue | None


@dataclass(frozen=True)
class MultiUnit:
    months: list[MonthOfMembers]
    period: MonthOfMembers


@dataclass(frozen=True)
class SpendShare:
    units: list[UnitSpend]
    total: Decimal
    currency: str


@dataclass(frozen=True)
class Rfm:
    counts: list[tuple[RfmSegment, int]]  # every segment, zeros included
    members: list[RfmScore]  # the asked segment's, one page
    currency: str  # of monetary ('' when no programme is known yet)
    last_member: str | None  # where the next page starts after; None: this page is the last
    refreshed_at: datetime | None = None  # read from the members' figures as of this refresh
    grid: list[RfmCell] = field(default_factory=list)  # 25 cells, by recency then frequency


def rfm_segment(segment: str) -> RfmSegment | None:
    """The named segment (None for empty: no member list); else INVALID_ARGUMENT."""
    if not segment:
        return None
    try:
        return RfmSegment(segment)
    except ValueError:
        names = ", ".join(s.value for s in RfmSegment)
        raise InvalidArgument.of(
            [FieldViolation("segment", f"{segment[:32]!r} is none of {names}")]
        ) from None


async def rfm(
    uow: InsightsUnitOfWork,
    period: Period,
    unit: str,
    segment: RfmSegment | None,
    after: str,
    page_size: int,
) -> Rfm:
    """Members' RFM over the period: each segment's count, and a page of `segment`'s members
    after member `after` (by ID)."""
    await known_unit(uow, unit)
    found = await uow.figures.programme_at(period.end)
    currency = found[1] if found else ""
    groups = await uow.figures.rfm_groups(period.start, period.end, unit, currency)
    members: list[RfmScore] = []
    if segment is not None:
        members = await uow.figures.rfm_members(
            period.start, period.end, unit, currency, segment.value, after, page_size + 1
        )
    last = members[page_size - 1].member_id if len(members) > page_size else None
    return Rfm(
        list(segment_counts(groups).items()),
        members[:page_size],
        currency,
        last,
        grid=rfm_grid(groups),
    )


async def standard_rfm(
    uow: InsightsUnitOfWork,
    now: datetime,
    unit: str,
    segment: RfmSegment | None,
    after: str,
    page_size: int,
) -> Rfm:
    """RFM over the standard trailing 12 months: the group's read from the members' figures
    (refreshed in full on a schedule, members recomputed as their events arrive); a unit's, or
    the group's before any refresh, computed from the facts over the 12 months to `now`."""
    last = await uow.member_figures.last_refresh()
    if unit or last is None:
        return await rfm(uow, Period(year_before(now), now), unit, segment, after, page_size)
    found = await uow.figures.programme_at(now)
    currency = found[1] if found else ""
    counts = await uow.member_figures.segment_counts()
    members: list[RfmScore] = []
    if segment is not None:
        members = await uow.member_figures.segment_members(segment.value, after, page_size + 1)
    last_member = members[page_size - 1].member_id if len(members) > page_size else None
    return Rfm(
        [(s, counts.get(s.value, 0)) for s in RfmSegment],
        members[:page_size],
        currency,
        last_member,
        last.as_of,
        rfm_grid(await uow.member_figures.rfm_cells()),
    )


async def known_unit(uow: InsightsUnitOfWork, unit: str) -> str:
    """`unit` when it is empty (the group) or a unit of the programme; else INVALID_ARGUMENT."""
    if unit and not await uow.figures.known_unit(unit):
        raise InvalidArgument.of(
            [FieldViolation("unit", f"{unit[:32]!r} is not a business unit of the programme")]
        )
    return unit


async def points_liability(uow: InsightsUnitOfWork, period: Period, unit: str) -> Liability:
    await known_unit(uow, unit)
    units = liabilities(
        await uow.figures.posting_sums(period.start, period.end),
        await uow.figures.lapsed_sums(period.start, period.end),
        await uow.figures.outstanding(period.end),
    )
    chosen = [units[u] for u in sorted(units) if not unit or u == unit]
    found = await uow.figures.programme_at(period.end)
    value = PointValue(*found) if found is not None else None
    return Liability(chosen, total_of(chosen), value)


async def standard_points_liability(uow: InsightsUnitOfWork, now: datetime, unit: str) -> Liability:
    """The liability as of now: everything issued, redeemed, expired and forfeited so far and
    the points outstanding now, read from the sums the facts' triggers keep (the same figures
    as `points_liability` over every fact recorded), valued at the point value in force now."""
    await known_unit(uow, unit)
    units = liabilities(*await uow.figures.stored_liability())
    chosen = [units[u] for u in sorted(units) if not unit or u == unit]
    found = await uow.figures.programme_at(now)
    value = PointValue(*found) if found is not None else None
    return Liability(chosen, total_of(chosen), value)


async def multi_unit_members(uow: InsightsUnitOfWork, period: Period, unit: str) -> MultiUnit:
    await known_unit(uow, unit)
    found = {m.month: m for m in await uow.figures.months(period.start, period.end, unit)}
    months = [found.get(month, MonthOfMembers(month, 0, 0)) for month in period.months()]
    active, multi = await uow.figures.whole_period(period.start, period.end, unit)
    return MultiUnit(months, MonthOfMembers("", active, multi))


async def standard_multi_unit_members(
    uow: InsightsUnitOfWork, now: datetime, unit: str
) -> MultiUnit:
    """Members across units over the standard trailing 12 months: the whole window's figure
    (of members active at `unit`, if one is named) read from the stored counts of the members'
    figures (no months); computed from the facts over the 12 months to `now` before any
    refresh."""
    await known_unit(uow, unit)
    if await uow.member_figures.last_refresh() is None:
        return await multi_unit_members(uow, Period(year_before(now), now), unit)
    active, multi = await uow.member_figures.multi_unit_counts(unit)
    return MultiUnit([], MonthOfMembers("", active, multi))


async def standard_unit_overlap(
    uow: InsightsUnitOfWork, now: datetime, unit: str
) -> list[tuple[str, str, int]]:
    """The unit x unit overlap over the standard trailing 12 months, read from the stored
    counts of the members' figures (the pairs that include `unit`, if one is named); computed
    from the facts over the 12 months to `now` before any refresh."""
    await known_unit(uow, unit)
    if await uow.member_figures.last_refresh() is None:
        return await unit_overlap(uow, Period(year_before(now), now), unit)
    pairs = await uow.member_figures.overlap_counts()
    return [(a, b, n) for a, b, n in pairs if not unit or unit in (a, b)]


async def unit_overlap(
    uow: InsightsUnitOfWork, period: Period, unit: str
) -> list[tuple[str, str, int]]:
    await known_unit(uow, unit)
    return await uow.figures.overlap(period.start, period.end, unit)


async def unit_flows(
    uow: InsightsUnitOfWork, period: Period, unit: str
) -> list[tuple[str, str, int]]:
    await known_unit(uow, unit)
    return await uow.figures.flows(period.start, period.end, unit)


async def standard_unit_flows(
    uow: InsightsUnitOfWork, now: datetime, unit: str
) -> list[tuple[str, str, int]]:
    """First unit -> next unit flows of the members first active in the standard trailing 12
    months, read from the stored counts of the members' figures (the flows from or to `unit`,
    if one is named); computed from the facts over the 12 months to `now` before any
    refresh."""
    await known_unit(uow, unit)
    if await uow.member_figures.last_refresh() is None:
        return await unit_flows(uow, Period(year_before(now), now), unit)
    flows = await uow.member_figures.flow_counts()
    return [(a, b, n) for a, b, n in flows if not unit or unit in (a, b)]


async def spend_share(uow: InsightsUnitOfWork, period: Period, unit: str) -> SpendShare:
    await known_unit(uow, unit)
    rows = await uow.figures.spend(period.start, period.end)
    found = await uow.figures.programme_at(period.end)
    currency = found[1] if found else (rows[0][1] if rows else "")
    # Purchases are in the base currency (points converts them); an imported order in another
    # currency has no rate here and is left out of the shares.
    return _spend_share([(u, s, m) for u, c, s, m in rows if c == currency], unit, currency)


def _spend_share(rows: list[tuple[str, Decimal, int]], unit: str, currency: str) -> SpendShare:
    return SpendShare(*crossunit.shares_at(rows, unit), currency)


async def standard_spend_share(uow: InsightsUnitOfWork, now: datetime, unit: str) -> SpendShare:
    """The spend share over the standard trailing 12 months, read from the stored sums of the
    members' figures; computed from the facts over the 12 months to `now` before any
    refresh."""
    await known_unit(uow, unit)
    if await uow.member_figures.last_refresh() is None:
        return await spend_share(uow, Period(year_before(now), now), unit)
    found = await uow.figures.programme_at(now)
    currency = found[1] if found else ""
    return _spend_share(await uow.member_figures.spend_counts(), unit, currency)


def whole_months(period: Period) -> bool:
    """Whether the period starts and ends at the start of a month (UTC): the stored months'
    counts answer it."""
    return all(
        (t := moment.astimezone(UTC)).day == 1 and t.time() == time(0) and t.tzinfo is not None
        for moment in (period.start, period.end)
    )


async def cohorts(uow: InsightsUnitOfWork, period: Period, unit: str) -> list[Cohort]:
    """Registration cohorts x activity retention: a period of whole months (UTC) read from the
    stored months' counts (adapters/month_counts.py); any other from the facts."""
    await known_unit(uow, unit)
    months = period.months()
    if whole_months(period):
        return cohort_figures.cohorts(
            months,
            await uow.month_counts.cohort_sizes(unit, months),
            await uow.month_counts.cohort_activity(unit, months),
        )
    return await cohorts_from_facts(uow, period, unit)


async def cohorts_from_facts(uow: InsightsUnitOfWork, period: Period, unit: str) -> list[Cohort]:
    return cohort_figures.cohorts(
        period.months(),
        await uow.figures.cohort_sizes(period.start, period.end, unit),
        await uow.figures.cohort_activity(period.start, period.end, unit),
    )


async def programme_health(uow: InsightsUnitOfWork, period: Period, unit: str) -> list[HealthMonth]:
    """The programme's health month by month: for a period of whole months (UTC) members,
    activity and redeeming read from the stored months' counts; tiers at each month's end and
    benefits by tier (and everything for any other period) computed from the facts."""
    await known_unit(uow, unit)
    months = period.month_ends()
    if whole_months(period) and months:
        stored = await uow.month_counts.health_months(unit, [m for m, _ in months])
        activity = {m: MonthActivity(m, *counts) for m, counts in stored.items()}
    else:
        activity = await uow.figures.health_activity(period.start, period.end, unit, months)
    return cohort_figures.health(
        [m for m, _ in months],
        activity,
        await uow.figures.health_tiers(period.start, period.end, unit, months),
        await uow.figures.health_benefits(period.start, period.end, unit),
    )


async def health_from_facts(
    uow: InsightsUnitOfWork, period: Period, unit: str
) -> list[HealthMonth]:
    months = period.month_ends()
    return cohort_figures.health(
        [m for m, _ in months],
        await uow.figures.health_activity(period.start, period.end, unit, months),
        await uow.figures.health_tiers(period.start, period.end, unit, months),
        await uow.figures.health_benefits(period.start, period.end, unit),
    )
