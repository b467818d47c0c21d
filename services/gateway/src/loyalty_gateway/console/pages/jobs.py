"""The console's jobs page (a placeholder until it is built)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from loyalty_gateway.console.render import NavItem, coming

NAV = NavItem("jobs", "/jobs", "jobs")
ROUTES: list[BaseRoute] = [Route("/jobs", coming("jobs", "jobs"))]
