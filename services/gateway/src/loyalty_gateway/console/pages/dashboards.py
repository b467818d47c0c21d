"""The console's dashboards (`/console/dashboards`, then `/console/dashboards/<name>`): each one
figure of flows/figures.py, shown as an Apache ECharts chart and as a `<table>` of the same data
(a caption, column headers with `scope`), so a screen reader or a copy gets what the chart shows.

The chart's option is plain JSON in a `<script type="application/json">` block (Jinja2's
`tojson`, which escapes `<`, `>`, `&` and `'`), read by static/charts.js: no inline script, as
the console's Content-Security-Policy requires. A figure whose service did not answer is shown
as unavailable, naming the calls that failed.

The services are called as the signed-in operator: a unit manager's calls carry its unit and
the figures are asked for that unit (flows/figures.py decides what a unit sees); an analyst's
and an admin's are the group's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from loyalty_gateway.adapters.services import Call, Services
from loyalty_gateway.console import i18n
from loyalty_gateway.console.backend import as_operator
from loyalty_gateway.console.operators import Operator
from loyalty_gateway.console.render import (
    NavItem,
    console_of,
    operator_of,
    render,
    requires,
)
from loyalty_gateway.console.roles import GROUP
from loyalty_gateway.flows.figures import DASHBOARDS, Figure, Period, dashboard, echarts_option

ACTION = "dashboards"
NAV = NavItem("dashboards", "/dashboards", ACTION)
DEADLINE_SECONDS = 10.0  # for all of a dashboard's calls together
AT_LEAST_SECONDS = 0.05
MONTHS = 12  # the period of the figures over time: the last twelve months up to today


def period_until(now: datetime) -> Period:
    """The last MONTHS months up to the end of today (UTC)."""
    end = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return Period(end - timedelta(days=31 * MONTHS), end + timedelta(days=1))


def unit_of(operator: Operator) -> str:
    """The unit whose figures the operator sees: its own for a unit role, "" for the group."""
    return "" if operator.unit == GROUP else operator.unit


@dataclass(frozen=True)
class Shown:
    """A figure as the page shows it: translated text, the chart's option and the table."""

    key: str
    title: str
    available: bool
    unavailable: tuple[str, ...]
    option: dict[str, Any]
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]  # per column: right-aligned figures


def _numeric(rows: tuple[tuple[str, ...], ...], column: int) -> bool:
    values = [r[column] for r in rows if column < len(r) and r[column]]
    if not values:
        return False
    return all(v.replace(".", "", 1).replace("%", "").lstrip("-").isdigit() for v in values)


def shown(figure: Figure, t: Callable[..., str]) -> Shown:
    """The figure with its keys (`figures.…`) translated; data (units, tiers, months) as is."""

    def text(value: str) -> str:
        return t(value) if value.startswith("figures.") else value

    rows = tuple(tuple(text(cell) for cell in row) for row in figure.rows)
    columns = tuple(text(c) for c in figure.columns)
    return Shown(
        key=figure.key,
        title=t(figure.title),
        available=figure.available,
        unavailable=figure.unavailable,
        option=echarts_option(figure, t) if figure.available else {},
        columns=columns,
        rows=rows,
        numeric=tuple(_numeric(rows, i) for i in range(len(columns))),
    )


def _services(request: Request) -> Services:
    state = request.app.state
    found: Services | None = getattr(state, "dashboard_services", None)
    if found is None:
        found = Services(console_of(request).backends)
        state.dashboard_services = found
    return found


@requires(ACTION)
async def listing(request: Request) -> Response:
    operator = operator_of(request)
    return render(
        request, "dashboards/list.html", {"dashboards": DASHBOARDS, "unit": unit_of(operator)}
    )


@requires(ACTION)
async def one(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in DASHBOARDS:
        return render(request, "error.html", {"status": 404}, 404)
    operator = operator_of(request)
    unit = unit_of(operator)
    metadata = as_operator(console_of(request).credentials, operator)  # no reason: text only
    text = tuple((k, v) for k, v in metadata if isinstance(v, str))
    call = Call.within(text, DEADLINE_SECONDS, AT_LEAST_SECONDS)
    period = period_until(console_of(request).clock())
    figure = await dashboard(name, _services(request), call, period, unit)
    t = i18n.translator(i18n.language(request.cookies.get(i18n.COOKIE)))
    context = {
        "name": name,
        "dashboards": DASHBOARDS,
        "figure": shown(figure, t),
        "unit": unit,
        "period": period,
    }
    return render(request, "dashboards/dashboard.html", context)


ROUTES: list[BaseRoute] = [
    Route("/dashboards", listing, methods=["GET"]),
    Route("/dashboards/{name}", one, methods=["GET"]),
]
