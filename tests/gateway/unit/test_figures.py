"""The dashboards' figures shaped from hand-made answers: tables and series, a unit's share of
the settlement, an unavailable service named, and ECharts options that are plain JSON."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any, cast

import grpc
import pytest
from loyalty.common.v1 import money_pb2
from loyalty.engagement.v1 import engagement_service_pb2 as engagement_pb
from loyalty.insights.v1 import insights_service_pb2 as insights_pb
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty_gateway.adapters.services import Call, Services
from loyalty_gateway.flows import figures
from loyalty_gateway.flows.figures import Figure, echarts_option

PERIOD = figures.Period(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))


def cny(amount: str) -> money_pb2.Money:
    return money_pb2.Money(currency_code="CNY", amount=amount)


def liability_answer() -> insights_pb.GetPointsLiabilityResponse:
    return insights_pb.GetPointsLiabilityResponse(
        units=[
            insights_pb.UnitLiability(
                unit="mall",
                points_outstanding=300,
                expiring=[
                    insights_pb.ExpiringPoints(month="2027-03", points=200, value=cny("2.00")),
                    insights_pb.ExpiringPoints(month="", points=100, value=cny("1.00")),
                ],
            ),
            insights_pb.UnitLiability(
                unit="hotel",
                points_outstanding=50,
                expiring=[
                    insights_pb.ExpiringPoints(month="2027-01", points=50, value=cny("0.50"))
                ],
            ),
        ]
    )


def settlement_answer() -> points_pb.GetSettlementResponse:
    return points_pb.GetSettlementResponse(
        flows=[
            points_pb.SettlementFlow(
                earned_unit="mall", redeemed_unit="cinema", points=40, value=cny("0.40")
            ),
            points_pb.SettlementFlow(
                earned_unit="hotel", redeemed_unit="hotel", points=10, value=cny("0.10")
            ),
        ]
    )


def cohorts_answer() -> insights_pb.GetCohortsResponse:
    return insights_pb.GetCohortsResponse(
        cohorts=[
            insights_pb.Cohort(
                month="2026-01",
                members=10,
                months=[
                    insights_pb.CohortMonth(month="2026-01", offset=0, retention=1.0),
                    insights_pb.CohortMonth(month="2026-02", offset=1, retention=0.4),
                ],
            ),
            insights_pb.Cohort(
                month="2026-02",
                members=4,
                months=[insights_pb.CohortMonth(month="2026-02", offset=0, retention=0.5)],
            ),
        ]
    )


def health_answer() -> insights_pb.GetProgrammeHealthResponse:
    return insights_pb.GetProgrammeHealthResponse(
        months=[
            insights_pb.ProgrammeHealthMonth(
                month="2026-01", tiers=[insights_pb.TierMembers(tier="silver", members=3)]
            ),
            insights_pb.ProgrammeHealthMonth(
                month="2026-02",
                tiers=[
                    insights_pb.TierMembers(tier="silver", members=2),
                    insights_pb.TierMembers(tier="gold", members=1),
                ],
            ),
        ]
    )


def distribution_answer() -> tiers_pb.GetTierDistributionResponse:
    return tiers_pb.GetTierDistributionResponse(
        counts=[
            tiers_pb.TierCount(tier="member", members=9),
            tiers_pb.TierCount(tier="silver", members=2),
            tiers_pb.TierCount(tier="gold", members=1),
        ]
    )


def uplift_answer(journey: str) -> insights_pb.GetJourneyUpliftResponse:
    return insights_pb.GetJourneyUpliftResponse(
        journey=journey,
        treatment=insights_pb.UpliftGroup(members=90, converted=27, conversion_rate=0.3),
        control=insights_pb.UpliftGroup(members=10, converted=2, conversion_rate=0.2),
        conversion=insights_pb.Uplift(
            absolute=0.1, absolute_low=-0.15, absolute_high=0.35, significant=False
        ),
    )


def plain_json(option: dict[str, Any]) -> bool:
    """Only JSON's own types, all the way down (no functions, no tuples, no objects)."""

    def plain(value: Any) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, str | int | float | bool)

    return plain(option) and json.loads(json.dumps(option)) == option


def test_liability_by_unit_and_expiry_month_with_never_last() -> None:
    figure = figures.liability_figure(liability_answer())
    assert figure.kind == "stacked-bar" and figure.available
    assert figure.x == ("2027-01", "2027-03", "figures.never")
    assert [(s.name, s.values) for s in figure.series] == [
        ("hotel", (50.0, 0.0, 0.0)),
        ("mall", (0.0, 200.0, 100.0)),
    ]
    assert figure.rows == (
        ("hotel", "2027-01", "50", "0.50"),
        ("mall", "2027-03", "200", "2.00"),
        ("mall", "figures.never", "100", "1.00"),
    )
    assert len(figure.columns) == len(figure.rows[0])


def test_the_settlement_matrix_and_a_units_share_of_it() -> None:
    figure = figures.settlement_figure(settlement_answer())
    assert figure.kind == "matrix"
    assert figure.x == ("cinema", "hotel") and figure.y == ("hotel", "mall")
    assert sorted(figure.cells) == [(0, 1, 40.0), (1, 0, 10.0)]
    assert figure.rows[0] == ("hotel", "hotel", "10", "0.10")
    cinema = figures.settlement_figure(settlement_answer(), unit="cinema")
    assert cinema.rows == (("mall", "cinema", "40", "0.40"),)


def test_tiers_over_the_months_then_now_in_ladder_order() -> None:
    figure = figures.tiers_figure(health_answer(), distribution_answer())
    assert figure.x == ("2026-01", "2026-02", figures.NOW)
    assert [(s.name, s.values) for s in figure.series] == [
        ("member", (0.0, 0.0, 9.0)),
        ("silver", (3.0, 2.0, 2.0)),
        ("gold", (0.0, 1.0, 1.0)),
    ]
    unit_only = figures.tiers_figure(health_answer(), None)
    assert unit_only.x == ("2026-01", "2026-02")
    assert [s.name for s in unit_only.series] == ["silver", "gold"]


def rfm_answer() -> insights_pb.GetRfmResponse:
    grid = [
        insights_pb.RfmCell(recency_score=r, frequency_score=f)
        for r in range(1, 6)
        for f in range(1, 6)
    ]
    grid[0].members = 4
    grid[0].average_monetary.CopyFrom(money_pb2.Money(currency_code="CNY", amount="0.00"))
    grid[-1].members = 5  # recency 5, frequency 5
    grid[-1].average_monetary.CopyFrom(money_pb2.Money(currency_code="CNY", amount="812.40"))
    grid[7].members = 1  # recency 2, frequency 3
    return insights_pb.GetRfmResponse(
        segments=[
            insights_pb.RfmSegmentCount(segment="champions", members=5),
            insights_pb.RfmSegmentCount(segment="at_risk", members=1),
            insights_pb.RfmSegmentCount(segment="lost", members=4),
        ],
        grid=grid,
    )


def test_the_rfm_grid_as_a_heatmap_and_the_segments_as_the_table() -> None:
    rfm = figures.rfm_figure(rfm_answer())
    assert rfm.kind == "heatmap"
    assert rfm.x == rfm.y == ("1", "2", "3", "4", "5")
    assert (rfm.x_label, rfm.y_label) == ("figures.rfm.frequency", "figures.rfm.recency")
    assert len(rfm.cells) == 25 == len(rfm.cell_labels)
    filled = {
        (x, y): (v, label) for (x, y, v), label in zip(rfm.cells, rfm.cell_labels, strict=True) if v
    }
    assert filled == {
        (0, 0): (4.0, "4\nCNY 0.00"),
        (4, 4): (5.0, "5\nCNY 812.40"),
        (2, 1): (1.0, "1"),  # no average known: the members only
    }
    assert rfm.rows == (
        ("figures.rfm.champions", "5"),
        ("figures.rfm.at_risk", "1"),
        ("figures.rfm.lost", "4"),
    )
    option = echarts_option(rfm)
    assert option["visualMap"]["dimension"] == 2 and option["visualMap"]["max"] == 5.0
    series = option["series"][0]
    assert series["type"] == "heatmap" and series["label"]["formatter"] == "{@[3]}"
    assert [4, 4, 5.0, "5\nCNY 812.40"] in series["data"]
    # An answer without a grid (an older insights) draws an empty grid, the table kept.
    old = figures.rfm_figure(insights_pb.GetRfmResponse(segments=rfm_answer().segments))
    assert old.cells == () and len(old.rows) == 3


def test_overlap_and_multi_unit_tables() -> None:
    overlap = figures.overlap_figure(
        insights_pb.GetUnitOverlapResponse(
            pairs=[
                insights_pb.UnitPair(unit="mall", other_unit="hotel", members=3),
                insights_pb.UnitPair(unit="hotel", other_unit="mall", members=3),
                insights_pb.UnitPair(unit="mall", other_unit="mall", members=7),
            ]
        )
    )
    assert overlap.x == overlap.y == ("hotel", "mall")
    assert sorted(overlap.cells) == [(0, 1, 3.0), (1, 0, 3.0), (1, 1, 7.0)]
    multi = figures.multi_unit_figure(
        insights_pb.GetMultiUnitMembersResponse(
            months=[
                insights_pb.MonthOfMembers(month="2026-01", active_members=9, multi_unit_members=2)
            ]
        )
    )
    assert multi.kind == "line" and multi.rows == (("2026-01", "9", "2"),)
    assert [s.values for s in multi.series] == [(9.0,), (2.0,)]


def test_cohort_retention_as_a_heatmap_of_months_since_registration() -> None:
    figure = figures.cohorts_figure(cohorts_answer())
    assert figure.x == ("0", "1") and figure.y == ("2026-01", "2026-02")
    assert sorted(figure.cells) == [(0, 0, 100.0), (0, 1, 50.0), (1, 0, 40.0)]
    assert figure.rows == (("2026-01", "10", "100.0%", "40.0%"), ("2026-02", "4", "50.0%", ""))
    assert len(figure.columns) == 4


def test_journeys_with_treatment_control_and_uplift() -> None:
    summer = engagement_pb.Journey(name="journeys/j1", display_name="Summer", unit="mall")
    quiet = engagement_pb.Journey(name="journeys/j2", display_name="Quiet", unit="mall")
    figure = figures.journeys_figure([(summer, uplift_answer("journeys/j1")), (quiet, None)])
    assert figure.x == ("Summer", "Quiet")
    assert [s.values for s in figure.series] == [(0.3, 0.0), (0.2, 0.0)]
    assert figure.rows[0] == (
        "Summer",
        "mall",
        "90",
        "10",
        "30.0%",
        "20.0%",
        "10.0%",
        "-15.0% – 35.0%",
        "figures.no",
    )
    assert figure.rows[1][2:] == ("",) * 7


@pytest.mark.parametrize(
    "figure",
    [
        figures.liability_figure(liability_answer()),
        figures.settlement_figure(settlement_answer()),
        figures.tiers_figure(health_answer(), distribution_answer()),
        figures.cohorts_figure(cohorts_answer()),
        figures.settlement_figure(points_pb.GetSettlementResponse()),
        figures.rfm_figure(rfm_answer()),
        Figure("rfm", "bar", "figures.segment", "figures.members", available=False),
    ],
    ids=lambda f: f"{f.key}-{f.kind}-{len(f.rows)}",
)
def test_the_echarts_option_is_plain_json(figure: Figure) -> None:
    option = echarts_option(figure, translate=lambda key: f"<{key}>")
    assert plain_json(option)
    assert option["title"]["text"] == f"<figures.{figure.key}.title>"
    assert option["xAxis"]["name"] == f"<{figure.x_label}>"
    if figure.kind in ("heatmap", "matrix"):
        assert option["series"][0]["type"] == "heatmap"
        labels = [[label] for label in figure.cell_labels] or [[]] * len(figure.cells)
        assert option["series"][0]["data"] == [
            [*c, *label] for c, label in zip(figure.cells, labels, strict=True)
        ]
    else:
        assert [s["data"] for s in option["series"]] == [list(s.values) for s in figure.series]
        stacked = {s.get("stack") for s in option["series"]}
        assert stacked <= ({"total"} if figure.kind == "stacked-bar" else {None})


class Down:
    """A service answering every call with UNAVAILABLE."""

    def __getattr__(self, name: str) -> Any:
        async def refuse(*args: Any, **kwargs: Any) -> Any:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "down"
            )

        return refuse


class Partly:
    """Insights answers; tiers, points and engagement are down."""

    def __init__(self) -> None:
        self.down = Down()

    async def get_programme_health(self, call: Call, request: Any) -> Any:
        assert request.unit == ""
        return health_answer()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.down, name)


def test_a_service_down_leaves_its_figure_unavailable_not_an_exception() -> None:
    call = Call.each((), 1.0)

    async def everything(services: Any) -> dict[str, Figure]:
        return await figures.every_dashboard(cast(Services, services), call, PERIOD)

    down = asyncio.run(everything(Down()))
    assert sorted(down) == sorted(figures.DASHBOARDS)
    assert all(not f.available and f.unavailable and f.empty for f in down.values())
    assert down["settlement"].unavailable == ("GetSettlement",)
    partly = asyncio.run(everything(Partly()))
    assert partly["tiers"].available and partly["tiers"].unavailable == ("GetTierDistribution",)
    assert partly["tiers"].x == ("2026-01", "2026-02")
    assert not partly["journeys"].available
