"""The dashboards page's shaping of a figure: keys translated and data kept, numbers marked
for right alignment, the chart's option kept to JSON data, and the period of the figures."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from loyalty.insights.v1 import insights_service_pb2 as insights_pb
from loyalty_gateway.console import i18n
from loyalty_gateway.console.operators import Operator
from loyalty_gateway.console.pages.dashboards import period_until, shown, unit_of
from loyalty_gateway.flows import figures
from loyalty_gateway.flows.figures import DASHBOARDS, Figure, Series

FIGURE = Figure(
    "rfm",
    "bar",
    "figures.segment",
    "figures.members",
    x=("figures.rfm.champions", "figures.rfm.lost"),
    series=(Series("figures.members", (3.0, 1.0)),),
    columns=("figures.segment", "figures.members"),
    rows=(("figures.rfm.champions", "3"), ("figures.rfm.lost", "1")),
)


def test_keys_are_translated_and_data_kept() -> None:
    found = shown(FIGURE, i18n.translator("en"))
    assert found.title == "RFM segments"
    assert found.columns == ("Segment", "Members")
    assert found.rows == (("Champions", "3"), ("Lost", "1"))
    assert found.numeric == (False, True)
    assert found.option["xAxis"]["data"] == ["Champions", "Lost"]
    json.dumps(found.option)  # data only, for the page's JSON block
    zh = shown(FIGURE, i18n.translator("zh-CN"))
    assert zh.title == "RFM 分群" and zh.rows[0] == ("重要价值", "3")


def test_points_that_never_expire_are_named_in_the_language_shown() -> None:
    figure = figures.liability_figure(
        insights_pb.GetPointsLiabilityResponse(
            units=[
                insights_pb.UnitLiability(
                    unit="mall",
                    expiring=[
                        insights_pb.ExpiringPoints(month="2027-03", points=5),
                        insights_pb.ExpiringPoints(month="", points=7),
                    ],
                )
            ]
        )
    )
    zh = shown(figure, i18n.translator("zh-CN"))
    assert [row[1] for row in zh.rows] == ["2027-03", "永不过期"]
    assert zh.option["xAxis"]["data"] == ["2027-03", "永不过期"]
    en = shown(figure, i18n.translator("en"))
    assert [row[1] for row in en.rows] == ["2027-03", "Never expires"]


def test_the_rfm_grid_is_labelled_in_the_language_shown() -> None:
    grid = [
        insights_pb.RfmCell(recency_score=r, frequency_score=f, members=r * f)
        for r in range(1, 6)
        for f in range(1, 6)
    ]
    answer = insights_pb.GetRfmResponse(
        segments=[insights_pb.RfmSegmentCount(segment="loyal", members=3)], grid=grid
    )
    en = shown(figures.rfm_figure(answer), i18n.translator("en"))
    assert en.option["xAxis"]["name"] == "Frequency score (1–5)"
    assert en.option["yAxis"]["name"] == "Recency score (1–5)"
    assert en.rows == (("Loyal", "3"),) and en.columns == ("Segment", "Members")
    zh = shown(figures.rfm_figure(answer), i18n.translator("zh-CN"))
    assert zh.option["yAxis"]["name"] == "最近消费得分（1–5）"


def test_an_unavailable_figure_has_no_chart() -> None:
    gone = Figure(
        "rfm", "bar", "figures.segment", "figures.members", unavailable=("GetRfm",), available=False
    )
    found = shown(gone, i18n.translator("en"))
    assert not found.available and found.option == {} and found.unavailable == ("GetRfm",)


def test_every_figure_key_has_its_text_in_both_languages() -> None:
    for lang in i18n.LANGS:
        strings = i18n.catalogue(lang)
        for key in DASHBOARDS:
            assert f"figures.{key}.title" in strings and f"dashboards.{key}" in strings


def test_the_period_is_the_last_year_to_the_end_of_today() -> None:
    period = period_until(datetime(2026, 6, 15, 13, 30, tzinfo=UTC))
    assert period.end == datetime(2026, 6, 16, tzinfo=UTC)
    assert period.start < datetime(2025, 6, 16, tzinfo=UTC)


def test_a_unit_manager_sees_its_unit_and_others_the_group() -> None:
    assert unit_of(Operator("o1", "manager", "unit_manager", "mall")) == "mall"
    assert unit_of(Operator("o2", "analyst", "analyst", "group")) == ""
