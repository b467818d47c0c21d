"""The console's audit page (a placeholder until it is built)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from loyalty_gateway.console.render import NavItem, coming

NAV = NavItem("audit", "/audit", "audit")
ROUTES: list[BaseRoute] = [Route("/audit", coming("audit", "audit"))]
