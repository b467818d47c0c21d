"""The dashboards in Chromium: with a few purchases at two units, a redemption at a third and a
journey (tests/gateway/test_figures.py's seeding, insights refreshed until every figure has
data), every dashboard draws an ECharts canvas and a table of the same data with rows; a unit
manager sees its own unit's figures, the group's uplift and settlement unavailable; an unknown
dashboard is a 404 and a customer-service operator is refused the pages."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio
from loyalty_gateway.flows.figures import DASHBOARDS
from loyalty_kit.server import RunningService

from tests.console.conftest import Console, Watched
from tests.console.test_sign_in import _sign_in
from tests.engagement.conftest import Engagement, catalogue, engagement  # noqa: F401 (fixtures)
from tests.gateway.test_figures import MALL_MANAGER, OPERATOR, seeded, until_all
from tests.insights.conftest import Suite, suite  # noqa: F401 (fixture)
from tests.points.conftest import programme  # noqa: F401 (fixture)
from tests.tiers.conftest import tiers  # noqa: F401 (fixture: the ladder)

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def figures_ready(
    suite: Suite,  # noqa: F811
    engagement: Engagement,  # noqa: F811
    tiers: Any,  # noqa: F811
    gateway_service: RunningService,
) -> None:
    """Purchases seeded and insights refreshed until every figure has data (polled)."""
    await seeded(suite, engagement)
    settings = gateway_service.context.settings
    await until_all(settings, suite, OPERATOR)
    await until_all(settings, suite, MALL_MANAGER, unit="mall")


async def _signed_in(page: Watched, console: Console, role: str, unit: str | None = None) -> Any:
    made, password = await console.operator(role, unit)
    p: Any = page.page
    await _sign_in(p, console, made.login, password)
    await p.wait_for_url(f"{console.url}/")
    return p


async def _drawn(p: Any, name: str) -> list[list[str]]:
    """The dashboard's table rows, once its chart is drawn on a canvas."""
    await p.locator(f"#chart-{name}[data-drawn='true'] canvas").first.wait_for()
    table = p.locator(f"#table-{name}")
    assert await table.locator("caption").inner_text()
    assert await table.locator("thead th[scope='col']").count() > 1
    rows = table.locator("tbody tr")
    found = []
    for i in range(await rows.count()):
        found.append([c.strip() for c in await rows.nth(i).locator("th, td").all_inner_texts()])
    return found


async def test_every_dashboard_draws_a_chart_and_a_table(
    page: Watched, console: Console, figures_ready: None
) -> None:
    p = await _signed_in(page, console, "group_admin")
    await p.get_by_role("navigation", name="主导航").get_by_role("link", name="数据看板").click()
    await p.wait_for_url(f"{console.url}/dashboards")
    assert await p.locator("#dashboards a").count() == len(DASHBOARDS)
    await page.shot("list")
    for name in DASHBOARDS:
        await p.goto(f"{console.url}/dashboards/{name}")
        rows = await _drawn(p, name)
        assert rows and all(any(cell for cell in row) for row in rows), (name, rows)
        assert await p.locator("#figure-unavailable, #figure-partial, #figure-empty").count() == 0
        await page.shot(name)
    # The settlement table holds the flow from the mall to the cinema the seeding made.
    await p.goto(f"{console.url}/dashboards/settlement")
    assert ["mall", "cinema"] in [row[:2] for row in await _drawn(p, "settlement")]
    # In English, the keys of the figures are translated, the data kept.
    await p.get_by_label("语言").select_option("en")
    await p.locator("#lang-apply").click()
    await p.locator("#figure-title").wait_for()
    assert await p.locator("#figure-title").inner_text() == "Settlement matrix"
    await _drawn(p, "settlement")
    await page.shot("settlement-en")


# The drawn chart's option as ECharts holds it (what it painted), not the page's JSON block.
DRAWN_RFM = """() => {
  const chart = window.echarts.getInstanceByDom(document.getElementById("chart-rfm"));
  const option = chart.getOption();
  return {
    type: option.series[0].type,
    data: option.series[0].data,
    x: option.xAxis[0].name,
    y: option.yAxis[0].name,
  };
}"""


async def test_the_rfm_grid_is_a_heatmap_with_the_segments_beside_it(
    page: Watched, console: Console, figures_ready: None
) -> None:
    p = await _signed_in(page, console, "analyst")
    await p.goto(f"{console.url}/dashboards/rfm")
    segments = await _drawn(p, "rfm")
    drawn = await p.evaluate(DRAWN_RFM)
    assert (drawn["type"], drawn["x"], drawn["y"]) == (
        "heatmap",
        "消费频次得分（1–5）",
        "最近消费得分（1–5）",
    )
    cells = {(c[0], c[1]): c for c in drawn["data"]}
    assert sorted(cells) == [(f, r) for f in range(5) for r in range(5)]
    # The grid counts the members the segments count (the seeded buyers among them), each cell
    # with members labelled with their average spend.
    members = sum(c[2] for c in drawn["data"])
    assert members >= 3 and members == sum(int(row[1]) for row in segments)
    filled = [c for c in drawn["data"] if c[2]]
    assert filled and all(c[3].startswith(f"{c[2]}\nCNY ") for c in filled), filled
    assert len(segments) == 11 and segments[0][0] == "重要价值"
    # The table sits beside the chart, not under it.
    chart = await p.locator("#chart-rfm").bounding_box()
    table = await p.locator("#table-rfm").bounding_box()
    assert table["x"] >= chart["x"] + chart["width"] and table["y"] < chart["y"] + chart["height"]
    await page.shot("rfm")


async def test_a_unit_manager_sees_its_units_figures(
    page: Watched, console: Console, figures_ready: None
) -> None:
    p = await _signed_in(page, console, "unit_manager", "mall")
    await p.goto(f"{console.url}/dashboards/liability")
    rows = await _drawn(p, "liability")
    assert rows and {row[0] for row in rows} == {"mall"}
    await page.shot("liability")
    await p.goto(f"{console.url}/dashboards/overlap")
    assert all("mall" in row[:2] for row in await _drawn(p, "overlap"))
    await p.goto(f"{console.url}/dashboards/journeys")
    rows = await _drawn(p, "journeys")
    assert rows and {row[1] for row in rows} == {"mall"}
    assert "GetJourneyUplift" in await p.locator("#figure-partial").inner_text()
    await page.shot("journeys")
    await p.goto(f"{console.url}/dashboards/settlement")
    assert "GetSettlement" in await p.locator("#figure-unavailable").inner_text()
    assert await p.locator("#table-settlement").count() == 0
    await page.shot("settlement")


def _expected(page: Watched, status: int) -> None:
    """Forget the refusal the test provoked (the response and the browser's note of it)."""
    page.problems[:] = [
        p
        for p in page.problems
        if not p.startswith(f"{status} ") and f"status of {status}" not in p
    ]


async def test_customer_service_is_refused_the_dashboards(page: Watched, console: Console) -> None:
    p = await _signed_in(page, console, "customer_service")
    response = await p.goto(f"{console.url}/dashboards")
    assert response.status == 403
    response = await p.goto(f"{console.url}/dashboards/liability")
    assert response.status == 403
    _expected(page, 403)


async def test_an_unknown_dashboard_is_not_found(page: Watched, console: Console) -> None:
    p = await _signed_in(page, console, "analyst")
    response = await p.goto(f"{console.url}/dashboards/nothing")
    assert response.status == 404
    _expected(page, 404)
