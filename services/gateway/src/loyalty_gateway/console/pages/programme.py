"""The console's programme page (a placeholder until it is built)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from loyalty_gateway.console.render import NavItem, coming

NAV = NavItem("programme", "/programme", "programme")
ROUTES: list[BaseRoute] = [Route("/programme", coming("programme", "programme"))]
