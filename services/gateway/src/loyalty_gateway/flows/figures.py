"""The console's dashboards: one function per dashboard gathering its figures from the services
(insights, points, tiers, engagement), each RPC asked in parallel under the deadline of the
`Call` it is given (`Call.within`), shaped into a `Figure`: a chart and a table of the same
data, so the page shows both (the table for screen readers and for copying).

A service down or refusing leaves its figure (or its part of one) unavailable, named in
`Figure.unavailable`; never an exception to the page.

A unit-scoped caller (a unit manager) passes its `unit`; then:
- liability, tier mix over time (programme health), RFM, overlap, 2+ unit members and cohorts are
  asked for that unit (the RPCs take a `unit`; insights also checks the caller may see it);
- the settlement matrix (points GetSettlement, an admin's RPC with no `unit`) is kept to the
  flows the unit earned or redeemed at;
- the tier count of now (tiers GetTierDistribution) is the group's only: left out for a unit;
- journeys are engagement's ListJourneys (a unit's client sees its own), kept to the unit's;
  their uplift (insights GetJourneyUplift) is the group's team's only, so a unit's journeys are
  listed with the uplift named unavailable.

`echarts_option(figure)` is the Apache ECharts option for a figure: plain JSON (no functions;
the page puts it in a `<script type="application/json">` block under a CSP without inline
script). Text in a figure is keys for translation (`figures.<key>.…`) or data (unit, tier,
segment codes, months); `echarts_option` translates the keys with the `translate` it is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.insights.v1 import insights_service_pb2 as insights_pb
from loyalty.points.v1 import points_service_pb2 as points_pb

from loyalty_gateway.adapters.services import Call, Services
from loyalty_gateway.flows.parallel import in_parallel

JOURNEYS_SHOWN = 20  # journeys whose uplift the journeys figure asks for
UPLIFT = ("GetJourneyUplift",)
NEVER = "figures.never"  # the expiry "month" of points that never expire (a key: translated)
KINDS = ("bar", "stacked-bar", "line", "heatmap", "matrix")


@dataclass(frozen=True)
class Series:
    """One line or bar series: its name (a key or a code) and a value per category."""

    name: str
    values: tuple[float, ...]


@dataclass(frozen=True)
class Figure:
    """One dashboard's chart and table.

    `kind` is bar, stacked-bar, line (over `x` categories, one value per series and category),
    heatmap or matrix (`cells` of (x index, y index, value) over `x` and `y` categories;
    `cell_labels`, when given, the text shown in each cell instead of its value, data not keys).
    `x_label`, `y_label` and the column keys are keys for translation; `rows` are strings.
    `unavailable` names the RPCs that failed; `available` is False when the figure has no data
    source left at all.
    """

    key: str
    kind: str
    x_label: str
    y_label: str
    x: tuple[str, ...] = ()
    y: tuple[str, ...] = ()
    series: tuple[Series, ...] = ()
    cells: tuple[tuple[int, int, float], ...] = ()
    cell_labels: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    unavailable: tuple[str, ...] = ()
    available: bool = True

    @property
    def title(self) -> str:
        return f"figures.{self.key}.title"

    @property
    def empty(self) -> bool:
        return not self.rows


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    def times(self) -> dict[str, Timestamp]:
        start, end = Timestamp(), Timestamp()
        start.FromDatetime(self.start)
        end.FromDatetime(self.end)
        return {"start_time": start, "end_time": end}


def _unavailable(key: str, kind: str, x_label: str, y_label: str, rpcs: Sequence[str]) -> Figure:
    return Figure(key, kind, x_label, y_label, unavailable=tuple(rpcs), available=False)


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


# -- points liability by unit and expiry month ---------------------------------------------------


async def liability(services: Services, call: Call, unit: str = "") -> Figure:
    """Outstanding points now by issuing unit and the month they expire in (insights
    GetPointsLiability as of now; a unit's own)."""
    request = insights_pb.GetPointsLiabilityRequest(unit=unit)
    found, failed = await in_parallel(
        {"GetPointsLiability": lambda: services.get_points_liability(call, request)}
    )
    if not found:
        return _unavailable("liability", "stacked-bar", "figures.month", "figures.points", failed)
    return liability_figure(found["GetPointsLiability"])


def liability_figure(answer: insights_pb.GetPointsLiabilityResponse) -> Figure:
    units = sorted(u.unit for u in answer.units)
    points = {(u.unit, e.month or NEVER): e.points for u in answer.units for e in u.expiring}
    months = sorted({m for _, m in points if m != NEVER})
    if any(m == NEVER for _, m in points):
        months.append(NEVER)
    series = tuple(
        Series(unit, tuple(float(points.get((unit, m), 0)) for m in months)) for unit in units
    )
    rows = tuple(
        (u.unit, e.month or NEVER, str(e.points), e.value.amount)
        for u in sorted(answer.units, key=lambda u: u.unit)
        for e in u.expiring
    )
    return Figure(
        "liability",
        "stacked-bar",
        "figures.month",
        "figures.points",
        x=tuple(months),
        series=series,
        columns=("figures.unit", "figures.month", "figures.points", "figures.value"),
        rows=rows,
    )


# -- the settlement matrix -----------------------------------------------------------------------


async def settlement(services: Services, call: Call, period: Period, unit: str = "") -> Figure:
    """Points earned at one unit and redeemed at another over the period (points
    GetSettlement, an admin's; a unit's: the flows it earned or redeemed at)."""
    request = points_pb.GetSettlementRequest(**period.times())
    found, failed = await in_parallel(
        {"GetSettlement": lambda: services.get_settlement(call, request)}
    )
    if not found:
        return _unavailable(
            "settlement", "matrix", "figures.redeemed_unit", "figures.earned_unit", failed
        )
    return settlement_figure(found["GetSettlement"], unit)


def settlement_figure(answer: points_pb.GetSettlementResponse, unit: str = "") -> Figure:
    flows = [f for f in answer.flows if not unit or unit in (f.earned_unit, f.redeemed_unit)]
    earned = sorted({f.earned_unit for f in flows})
    redeemed = sorted({f.redeemed_unit for f in flows})
    cells = tuple(
        (redeemed.index(f.redeemed_unit), earned.index(f.earned_unit), float(f.points))
        for f in flows
    )
    rows = tuple(
        (f.earned_unit, f.redeemed_unit, str(f.points), f.value.amount)
        for f in sorted(flows, key=lambda f: (f.earned_unit, f.redeemed_unit))
    )
    return Figure(
        "settlement",
        "matrix",
        "figures.redeemed_unit",
        "figures.earned_unit",
        x=tuple(redeemed),
        y=tuple(earned),
        cells=cells,
        columns=("figures.earned_unit", "figures.redeemed_unit", "figures.points", "figures.value"),
        rows=rows,
    )


# -- tier distribution over time -----------------------------------------------------------------

NOW = "figures.tiers.now"  # the category of the tiers service's count of now


async def tiers(services: Services, call: Call, period: Period, unit: str = "") -> Figure:
    """The tier mix at each month's end (insights GetProgrammeHealth, a unit's own) and, for the
    group, the members holding each tier now (tiers GetTierDistribution) as a last column."""
    health = insights_pb.GetProgrammeHealthRequest(**period.times(), unit=unit)
    asks: dict[str, Any] = {
        "GetProgrammeHealth": lambda: services.get_programme_health(call, health)
    }
    if not unit:
        asks["GetTierDistribution"] = lambda: services.get_tier_distribution(call)
    found, failed = await in_parallel(asks)
    if not found:
        return _unavailable("tiers", "stacked-bar", "figures.month", "figures.members", failed)
    figure = tiers_figure(found.get("GetProgrammeHealth"), found.get("GetTierDistribution"))
    return replace(figure, unavailable=tuple(failed))


def tiers_figure(health: Any, now: Any) -> Figure:
    columns: list[str] = []
    counts: dict[tuple[str, str], int] = {}
    order: list[str] = []
    if now is not None:
        order.extend(c.tier for c in now.counts)  # ladder order
    for month in health.months if health is not None else ():
        columns.append(month.month)
        for t in month.tiers:
            counts[(month.month, t.tier)] = t.members
            if t.tier not in order:
                order.append(t.tier)
    if now is not None:
        columns.append(NOW)
        for c in now.counts:
            counts[(NOW, c.tier)] = c.members
    series = tuple(
        Series(tier, tuple(float(counts.get((m, tier), 0)) for m in columns)) for tier in order
    )
    rows = tuple(
        (m, tier, str(counts[(m, tier)])) for m in columns for tier in order if (m, tier) in counts
    )
    return Figure(
        "tiers",
        "stacked-bar",
        "figures.month",
        "figures.members",
        x=tuple(columns),
        series=series,
        columns=("figures.month", "figures.tier", "figures.members"),
        rows=rows,
    )


# -- the RFM grid --------------------------------------------------------------------------------


SCORES = ("1", "2", "3", "4", "5")  # an RFM score's categories, worst first


async def rfm(services: Services, call: Call, unit: str = "") -> Figure:
    """The RFM grid over the trailing 12 months: members and their average spend per recency
    score x frequency score, and the named segments' members as the table (insights GetRfm
    from the members' figures as of their last refresh; a unit's own, computed now)."""
    request = insights_pb.GetRfmRequest(unit=unit)
    found, failed = await in_parallel({"GetRfm": lambda: services.get_rfm(call, request)})
    if not found:
        return _unavailable(
            "rfm", "heatmap", "figures.rfm.frequency", "figures.rfm.recency", failed
        )
    return rfm_figure(found["GetRfm"])


def rfm_figure(answer: insights_pb.GetRfmResponse) -> Figure:
    """The grid as a heatmap (frequency score across, recency score up; each cell its members
    and their average spend), the segments as the table."""
    grid = [c for c in answer.grid if 1 <= c.recency_score <= 5 and 1 <= c.frequency_score <= 5]
    labels = tuple(f"figures.rfm.{s.segment}" for s in answer.segments)
    return Figure(
        "rfm",
        "heatmap",
        "figures.rfm.frequency",
        "figures.rfm.recency",
        x=SCORES,
        y=SCORES,
        cells=tuple((c.frequency_score - 1, c.recency_score - 1, float(c.members)) for c in grid),
        cell_labels=tuple(_cell_label(c) for c in grid),
        columns=("figures.segment", "figures.members"),
        rows=tuple(
            (label, str(s.members)) for label, s in zip(labels, answer.segments, strict=True)
        ),
    )


def _cell_label(cell: insights_pb.RfmCell) -> str:
    """Members, then their average spend with its currency (when insights knows it)."""
    spend = cell.average_monetary
    if not cell.members or not cell.HasField("average_monetary"):
        return str(cell.members)
    return f"{cell.members}\n{spend.currency_code} {spend.amount}"


# -- cross-unit overlap and members of 2+ units --------------------------------------------------


async def overlap(services: Services, call: Call, unit: str = "") -> Figure:
    """Members active in both units of each pair over the trailing 12 months (insights
    GetUnitOverlap; a unit's: the pairs with it)."""
    request = insights_pb.GetUnitOverlapRequest(unit=unit)
    found, failed = await in_parallel(
        {"GetUnitOverlap": lambda: services.get_unit_overlap(call, request)}
    )
    if not found:
        return _unavailable("overlap", "heatmap", "figures.unit", "figures.unit", failed)
    return overlap_figure(found["GetUnitOverlap"])


def overlap_figure(answer: insights_pb.GetUnitOverlapResponse) -> Figure:
    units = sorted({p.unit for p in answer.pairs} | {p.other_unit for p in answer.pairs})
    cells = tuple(
        (units.index(p.unit), units.index(p.other_unit), float(p.members)) for p in answer.pairs
    )
    rows = tuple(
        (p.unit, p.other_unit, str(p.members))
        for p in sorted(answer.pairs, key=lambda p: (p.unit, p.other_unit))
    )
    return Figure(
        "overlap",
        "heatmap",
        "figures.unit",
        "figures.unit",
        x=tuple(units),
        y=tuple(units),
        cells=cells,
        columns=("figures.unit", "figures.other_unit", "figures.members"),
        rows=rows,
    )


async def multi_unit(services: Services, call: Call, period: Period, unit: str = "") -> Figure:
    """Active members and, of them, members active in two or more units, month by month
    (insights GetMultiUnitMembers; a unit's: its members active elsewhere too)."""
    request = insights_pb.GetMultiUnitMembersRequest(**period.times(), unit=unit)
    found, failed = await in_parallel(
        {"GetMultiUnitMembers": lambda: services.get_multi_unit_members(call, request)}
    )
    if not found:
        return _unavailable("multi_unit", "line", "figures.month", "figures.members", failed)
    return multi_unit_figure(found["GetMultiUnitMembers"])


def multi_unit_figure(answer: insights_pb.GetMultiUnitMembersResponse) -> Figure:
    months = answer.months
    return Figure(
        "multi_unit",
        "line",
        "figures.month",
        "figures.members",
        x=tuple(m.month for m in months),
        series=(
            Series("figures.active_members", tuple(float(m.active_members) for m in months)),
            Series(
                "figures.multi_unit_members", tuple(float(m.multi_unit_members) for m in months)
            ),
        ),
        columns=("figures.month", "figures.active_members", "figures.multi_unit_members"),
        rows=tuple((m.month, str(m.active_members), str(m.multi_unit_members)) for m in months),
    )


# -- cohort retention ----------------------------------------------------------------------------


async def cohorts(services: Services, call: Call, period: Period, unit: str = "") -> Figure:
    """Each month's registration cohort and the share of it active in each following month
    (insights GetCohorts; a unit's: members registered and active there)."""
    request = insights_pb.GetCohortsRequest(**period.times(), unit=unit)
    found, failed = await in_parallel({"GetCohorts": lambda: services.get_cohorts(call, request)})
    if not found:
        return _unavailable("cohorts", "heatmap", "figures.months_since", "figures.cohort", failed)
    return cohorts_figure(found["GetCohorts"])


def cohorts_figure(answer: insights_pb.GetCohortsResponse) -> Figure:
    cohorts = answer.cohorts
    longest = max((len(c.months) for c in cohorts), default=0)
    cells = tuple(
        (m.offset, row, round(m.retention * 100, 1))
        for row, c in enumerate(cohorts)
        for m in c.months
    )
    rows = tuple(
        (c.month, str(c.members), *(_pct(m.retention) for m in c.months))
        + ("",) * (longest - len(c.months))
        for c in cohorts
    )
    return Figure(
        "cohorts",
        "heatmap",
        "figures.months_since",
        "figures.cohort",
        x=tuple(str(i) for i in range(longest)),
        y=tuple(c.month for c in cohorts),
        cells=cells,
        columns=("figures.cohort", "figures.members", *(f"+{i}" for i in range(longest))),
        rows=rows,
    )


# -- journey results with uplift against control -------------------------------------------------


async def journeys(services: Services, call: Call, unit: str = "") -> Figure:
    """Each journey's conversion in its treatment and control groups and the uplift with its
    95% interval (engagement ListJourneys, the caller's own; insights GetJourneyUplift for the
    first JOURNEYS_SHOWN)."""
    found, failed = await in_parallel(
        {"ListJourneys": lambda: services.list_journeys(call, JOURNEYS_SHOWN)}
    )
    if not found:
        return _unavailable("journeys", "bar", "figures.journey", "figures.conversion", failed)
    listed = [j for j in found["ListJourneys"].journeys if not unit or j.unit == unit][
        :JOURNEYS_SHOWN
    ]
    if unit:  # a journey's uplift is the group's team's (insights refuses a unit's)
        return replace(journeys_figure([(j, None) for j in listed]), unavailable=UPLIFT)
    uplifts = await asyncio.gather(
        *(in_parallel({"GetJourneyUplift": _uplift(services, call, j.name)}) for j in listed)
    )
    answers = [(j, u.get("GetJourneyUplift")) for j, (u, _) in zip(listed, uplifts, strict=True)]
    missing = sorted({name for _, f in uplifts for name in f})
    figure = journeys_figure(answers)
    return replace(figure, unavailable=tuple(missing))


def _uplift(services: Services, call: Call, journey: str) -> Callable[[], Any]:
    return lambda: services.get_journey_uplift(call, journey)


def journeys_figure(answers: Sequence[tuple[Any, Any]]) -> Figure:
    """From (journey, its uplift or None when insights did not answer)."""
    names = tuple(j.display_name or j.name for j, _ in answers)
    treated = tuple(float(u.treatment.conversion_rate) if u else 0.0 for _, u in answers)
    held = tuple(float(u.control.conversion_rate) if u else 0.0 for _, u in answers)
    rows = []
    for (j, u), name in zip(answers, names, strict=True):
        if u is None:
            rows.append((name, j.unit, "", "", "", "", "", "", ""))
            continue
        c = u.conversion
        rows.append(
            (
                name,
                j.unit,
                str(u.treatment.members),
                str(u.control.members),
                _pct(u.treatment.conversion_rate),
                _pct(u.control.conversion_rate),
                _pct(c.absolute),
                f"{_pct(c.absolute_low)} – {_pct(c.absolute_high)}",
                "figures.yes" if c.significant and not u.insufficient else "figures.no",
            )
        )
    return Figure(
        "journeys",
        "bar",
        "figures.journey",
        "figures.conversion",
        x=names,
        series=(
            Series("figures.treatment", treated),
            Series("figures.control", held),
        ),
        columns=(
            "figures.journey",
            "figures.unit",
            "figures.treatment_members",
            "figures.control_members",
            "figures.treatment_conversion",
            "figures.control_conversion",
            "figures.uplift",
            "figures.interval",
            "figures.significant",
        ),
        rows=tuple(rows),
    )


# -- every dashboard -----------------------------------------------------------------------------

DASHBOARDS = (
    "liability",
    "settlement",
    "tiers",
    "rfm",
    "overlap",
    "multi_unit",
    "cohorts",
    "journeys",
)


async def dashboard(
    name: str, services: Services, call: Call, period: Period, unit: str = ""
) -> Figure:
    """One dashboard's figure by name (one of DASHBOARDS; another is a KeyError)."""
    asks: dict[str, Callable[[], Any]] = {
        "liability": lambda: liability(services, call, unit),
        "settlement": lambda: settlement(services, call, period, unit),
        "tiers": lambda: tiers(services, call, period, unit),
        "rfm": lambda: rfm(services, call, unit),
        "overlap": lambda: overlap(services, call, unit),
        "multi_unit": lambda: multi_unit(services, call, period, unit),
        "cohorts": lambda: cohorts(services, call, period, unit),
        "journeys": lambda: journeys(services, call, unit),
    }
    figure: Figure = await asks[name]()
    return figure


async def every_dashboard(
    services: Services, call: Call, period: Period, unit: str = ""
) -> dict[str, Figure]:
    """Every dashboard's figure at once, under the one deadline of `call`."""
    found = await asyncio.gather(
        *(dashboard(name, services, call, period, unit) for name in DASHBOARDS)
    )
    return dict(zip(DASHBOARDS, found, strict=True))


# -- the Apache ECharts option -------------------------------------------------------------------


def echarts_option(figure: Figure, translate: Callable[[str], str] = str) -> dict[str, Any]:
    """The ECharts option of a figure: only dicts, lists, strings, numbers and booleans."""

    def t(text: str) -> str:
        return translate(text) if text.startswith("figures.") else text

    base: dict[str, Any] = {
        "aria": {"enabled": True},
        "title": {"text": t(figure.title)},
        "tooltip": {"trigger": "item" if figure.kind in ("heatmap", "matrix") else "axis"},
        "animation": False,
    }
    if figure.kind in ("heatmap", "matrix"):
        values = [c[2] for c in figure.cells]
        return (
            base
            | {
                "grid": {"containLabel": True, "bottom": 96},
                "xAxis": {
                    "type": "category",
                    "name": t(figure.x_label),
                    "nameLocation": "middle",  # under the axis: at its end a long name is cut
                    "nameGap": 28,
                    "data": [t(x) for x in figure.x],
                },
                "yAxis": {
                    "type": "category",
                    "name": t(figure.y_label),
                    "data": [t(y) for y in figure.y],
                },
                "visualMap": {
                    "dimension": 2,  # the value (a cell's label, when it has one, follows it)
                    "min": min(values, default=0),
                    "max": max(values, default=0) or 1,
                    "calculable": True,
                    "orient": "horizontal",
                    "left": "center",
                    "bottom": 0,
                },
                "series": [
                    {
                        "name": t(figure.title),
                        "type": "heatmap",
                        "data": [
                            [x, y, v, *figure.cell_labels[i : i + 1]]
                            for i, (x, y, v) in enumerate(figure.cells)
                        ],
                        "label": {"show": True, "formatter": "{@[3]}"}
                        if figure.cell_labels
                        else {"show": True},
                    }
                ],
            }
        )
    kind = "line" if figure.kind == "line" else "bar"
    series: list[dict[str, Any]] = []
    for s in figure.series:
        one: dict[str, Any] = {"name": t(s.name), "type": kind, "data": list(s.values)}
        if figure.kind == "stacked-bar":
            one["stack"] = "total"
        series.append(one)
    return base | {
        "grid": {"containLabel": True},
        "legend": {"data": [t(s.name) for s in figure.series]},
        "xAxis": {"type": "category", "name": t(figure.x_label), "data": [t(x) for x in figure.x]},
        "yAxis": {"type": "value", "name": t(figure.y_label)},
        "series": series,
    }
