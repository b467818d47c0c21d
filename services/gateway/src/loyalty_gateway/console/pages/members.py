"""The console's members page (a placeholder until it is built)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from loyalty_gateway.console.render import NavItem, coming

NAV = NavItem("members", "/members", "members")
ROUTES: list[BaseRoute] = [Route("/members", coming("members", "members"))]
