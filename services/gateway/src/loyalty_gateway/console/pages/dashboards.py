"""The console's dashboards page (a placeholder until it is built)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from loyalty_gateway.console.render import NavItem, coming

NAV = NavItem("dashboards", "/dashboards", "dashboards")
ROUTES: list[BaseRoute] = [Route("/dashboards", coming("dashboards", "dashboards"))]
