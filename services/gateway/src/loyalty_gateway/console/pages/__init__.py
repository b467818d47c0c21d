"""The console's pages. Each module has `NAV` (its place in the navigation) and `ROUTES` (its
routes under /console); the app collects them, so adding a page never edits the app."""

from __future__ import annotations

from starlette.routing import BaseRoute

from loyalty_gateway.console.pages import audit, dashboards, jobs, members, programme
from loyalty_gateway.console.render import NavItem

PAGES = (members, programme, jobs, dashboards, audit)


def navigation() -> list[NavItem]:
    return [page.NAV for page in PAGES]


def routes() -> list[BaseRoute]:
    return [route for page in PAGES for route in page.ROUTES]
