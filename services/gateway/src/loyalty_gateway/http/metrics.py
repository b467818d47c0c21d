"""HTTP metrics of the gateway: every request counted and timed by method, route and status.

The route is a template, never the path asked for: `/v1/{member=members/*}/points:redeem` for a
contract's route (set by the contract routes once matched, `note_route`), the Starlette route's
path for the others (`/v1/token`, `/healthz`), `unmatched` for a path no route has. A path holds
member ids and whatever a caller typed; a template holds neither, and there are few of them.
"""

from __future__ import annotations

import time

from loyalty_kit.metrics import ServiceMetrics
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ROUTE = "loyalty.route"
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def note_route(request: Request, template: str) -> None:
    """The contract route `request` matched (its template), for the request's metrics."""
    request.scope[ROUTE] = template


def route_of(scope: Scope) -> str:
    noted = scope.get(ROUTE)
    if isinstance(noted, str):
        return noted
    route = scope.get("route")
    path = getattr(route, "path", None)
    # The contracts' catch-all, when no contract route matched, says nothing about the path.
    if not isinstance(path, str) or "{path:path}" in path:
        return UNMATCHED
    return path


class HttpMetrics:
    """ASGI middleware recording each HTTP request into the gateway's metrics."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics | None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.metrics is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what an exception that escapes every handler is answered with

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            route = route_of(scope)
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            self.metrics.http_seconds.labels(method, route).observe(time.perf_counter() - started)
