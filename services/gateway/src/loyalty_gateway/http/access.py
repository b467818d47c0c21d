"""What the gateway records of every HTTP exchange: its server span and its access log line.

The span comes from OpenTelemetry's ASGI instrumentation. It continues the caller's W3C trace
(`traceparent`), and the services' calls and the events they write continue it in turn: one
purchase is one trace. It is named by the route template (`POST /v1/purchases:record`), never
the path; the query string is kept from it (a lookup's query holds a phone or an e-mail
address). With tracing off the same middleware only passes the caller's trace context on.

The access log writes one line per request (`http`: method, route template as the metrics name
it, `unmatched` for a path no route has; status, milliseconds, API client id, request id, and
the trace), again without the path or query. The
request id is the caller's `X-Request-Id` when usable, else a new one; it is the request id of
all the work the request causes (`loyalty_kit.correlation`). Health probes are neither traced
nor logged.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from loyalty_kit.correlation import reset_request_id, set_request_id, usable_request_id
from loyalty_kit.logs import access_line
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loyalty_gateway.http.metrics import UNMATCHED, route_of

log_name = "loyalty.gateway.http"

QUIET_PATHS = ("/healthz",)  # probes: no span, no access log line
_ENTRY = "loyalty.access"  # the scope key of a request's entry
_QUERY = "loyalty.query"  # where the query string waits while the span starts


@dataclass
class Entry:
    """A request's access log line, filled in as the request is answered."""

    request_id: str
    client: str = ""  # the API client, once known


def entry_of(request: Request) -> Entry:
    """The request's entry (one made here for an app called without `observed`)."""
    found = request.scope.get(_ENTRY)
    if not isinstance(found, Entry):
        found = request.scope[_ENTRY] = Entry(_request_id(request.scope))
    return found


def _request_id(scope: Scope) -> str:
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id":
            given = usable_request_id(value.decode("latin-1"))
            if given:
                return given
    return uuid.uuid4().hex


class AccessLog:
    """One `http` line per request, in the request's span; the span named by its route's
    template, as the metrics name it (`metrics.route_of`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _QUERY in scope:
            scope["query_string"] = scope.pop(_QUERY)
        if scope["path"] in QUIET_PATHS:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        entry = scope[_ENTRY] = Entry(_request_id(scope))
        token = set_request_id(entry.request_id)
        status = 500  # unless an answer starts

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Named while the span is open (it ends with the answer's last bytes).
                _name_span(scope)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            access_line(
                log_name,
                "http",
                {
                    "method": scope["method"],
                    "route": route_of(scope),
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                    "client": entry.client or None,
                },
            )
            reset_request_id(token)


def _name_span(scope: Scope) -> None:
    route = route_of(scope)
    if route != UNMATCHED:
        span = trace.get_current_span()
        span.update_name(f"{scope['method']} {route}")
        span.set_attribute("http.route", route)


class _QueryKept:
    """Hands the traced app the request without its query string (`AccessLog` gives it back
    before the app reads it): the span's URL attributes are made from what it sees."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            scope[_QUERY] = scope["query_string"]
            scope["query_string"] = b""
        await self.app(scope, receive, send)


def _span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    """The span's first name, the method alone: `AccessLog` adds the route once matched."""
    return str(scope.get("method", "HTTP")), {}


def observed(app: ASGIApp) -> ASGIApp:
    """`app` with its server spans and access log."""
    traced = OpenTelemetryMiddleware(
        AccessLog(app),
        excluded_urls=",".join(QUIET_PATHS),
        default_span_details=_span_details,
        exclude_spans=["receive", "send"],
    )
    return _QueryKept(traced)
