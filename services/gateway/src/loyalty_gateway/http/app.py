"""The gateway's HTTP application (Starlette), routes by resource: the contracts' routes
(contracts.py), the uploads of import files (uploads.py), tokens (tokens.py), the back-office
console at /console (console/), the member's own page at /me (me/), the unsubscribe link of
members' messages (unsubscribe.py), health (health.py), and the OpenAPI document with its docs
page (openapi.py). Every other route comes from the contracts: their `google.api.http`
annotations, and the client-streaming Create methods as uploads; JSON is read and written with
protobuf's json_format (camelCase names, unpopulated fields written, unknown fields refused).
Failures answer with the google.rpc.Status as JSON and the HTTP code of its gRPC code
(exchange.py, errors.py). Every request is counted and timed by its route's template
(metrics.py), traced and written to the access log (access.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from loyalty_kit.errors import ResourceExhausted
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from loyalty_gateway.adapters.audit_log import AuditLog, direct_writer
from loyalty_gateway.adapters.backends import exposed_services
from loyalty_gateway.adapters.job_runs import JobRunStore
from loyalty_gateway.bootstrap import Gateway, utc_now
from loyalty_gateway.console.app import build_console
from loyalty_gateway.console.auth import DatabaseAccounts
from loyalty_gateway.console.backend import console_credentials
from loyalty_gateway.console.operators import Policy
from loyalty_gateway.console.runner import JobRunner, lease_of
from loyalty_gateway.http import audit_export, openapi
from loyalty_gateway.http.access import observed
from loyalty_gateway.http.contracts import ContractRoutes, RateLimits
from loyalty_gateway.http.exchange import unexpected
from loyalty_gateway.http.health import Health
from loyalty_gateway.http.metrics import HttpMetrics
from loyalty_gateway.http.tokens import TokenEndpoint
from loyalty_gateway.http.transcoding import routes_of
from loyalty_gateway.http.unsubscribe import PATH as UNSUBSCRIBE
from loyalty_gateway.http.unsubscribe import UnsubscribeEndpoint
from loyalty_gateway.http.uploads import Uploads, uploads_of
from loyalty_gateway.me.app import build_me
from loyalty_gateway.me.calls import ServiceCalls
from loyalty_gateway.me.cookie import Cookie, key_from
from loyalty_gateway.me.tokens import SignedOut

VERBS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def build_app(gateway: Gateway) -> ASGIApp:
    services = [s for found in exposed_services().values() for s in found]
    routes = routes_of(services)
    uploaded = uploads_of(services)
    # One count per API client across every route.
    limits = RateLimits(gateway.config.rate_limit_storage)
    contracts = ContractRoutes(
        routes,
        gateway.flows.by_method(),
        gateway.backends,
        gateway.keys.verifier,
        gateway.config,
        limits,
    )
    uploads = Uploads(uploaded, gateway.backends, gateway.keys.verifier, gateway.config, limits)
    audit = audit_export.AuditExport(AuditLog(gateway.uow), gateway.keys.verifier, limits)
    token = TokenEndpoint(gateway.keys, gateway.uow, gateway.config)
    unsubscribe = UnsubscribeEndpoint(
        gateway.backends,
        gateway.credentials,
        gateway.config.request_deadline_seconds,
        limits,
        gateway.config.unsubscribe_attempts_per_minute,
    )
    document = openapi.document(routes, uploaded)
    config = gateway.config
    per_minute = config.console_sign_in_attempts_per_minute

    async def sign_in_allowed(address: str) -> bool:
        try:
            await limits.hit_address("/console/login", address, per_minute)
        except ResourceExhausted:
            return False
        return True

    # The console's stepped jobs, kept in the gateway's database for every replica.
    job_runs = JobRunner(JobRunStore(gateway.uow, lease_of()), utc_now)
    console = build_console(
        DatabaseAccounts(
            gateway.uow,
            Policy(
                max_failures=config.console_max_failures,
                lockout=timedelta(seconds=config.console_lockout_seconds),
                idle=timedelta(seconds=config.console_idle_seconds),
                absolute=timedelta(seconds=config.console_absolute_seconds),
            ),
        ),
        config,
        credentials=console_credentials(gateway.keys.signing, config.console_token_ttl_seconds),
        backends=gateway.backends,
        sign_in_allowed=sign_in_allowed,
        members=gateway.member_actions,
        audit_log=AuditLog(gateway.uow),
        audit_write=direct_writer(gateway.context.sessions)
        if gateway.context.sessions is not None
        else None,
        job_runs=job_runs,
    )

    async def me_attempt_allowed(address: str) -> bool:
        try:
            await limits.hit_address(
                "/me/sign-in", address, config.member_page_sign_in_attempts_per_minute
            )
        except ResourceExhausted:
            return False
        return True

    # The member's own page (me/app.py): signed in by SMS code, the member's own token.
    member_page = build_me(
        ServiceCalls(gateway.backends, gateway.credentials, config.request_deadline_seconds),
        Cookie(key_from(gateway.keys.signing), secure=not config.console_insecure_cookies),
        SignedOut(limits.limiter.storage),
        unit=config.member_page_unit,
        max_body_bytes=config.max_body_bytes,
        attempt_allowed=me_attempt_allowed,
    )

    async def to_console(_request: Request) -> RedirectResponse:
        return RedirectResponse("/console/", status_code=307)

    async def to_me(_request: Request) -> RedirectResponse:
        return RedirectResponse("/me/", status_code=307)

    async def openapi_json(_request: Request) -> JSONResponse:
        return JSONResponse(document)

    async def docs(_request: Request) -> HTMLResponse:
        return HTMLResponse(openapi.DOCS_PAGE)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await job_runs.close()
        await gateway.backends.close()

    app = Starlette(
        routes=[
            Route("/healthz", Health(gateway.backends).answer),
            Route("/openapi.json", openapi_json),
            Route("/docs", docs),
            Mount("/docs/static", StaticFiles(directory=openapi.swagger_ui_dir()), name="static"),
            # The back-office console (console/app.py): its own sign-in, sessions and CSRF.
            Route("/console", to_console),
            Mount("/console", console, name="console"),
            Route("/me", to_me),
            Mount("/me", member_page, name="me"),
            Route("/v1/token", token.answer, methods=["POST"]),
            # No bearer token: the message's unsubscribe token is the authority (unsubscribe.py).
            Route(UNSUBSCRIBE, unsubscribe.answer, methods=["GET", "POST"]),
            Route(audit_export.PATH, audit.answer, methods=["GET"]),
            # Before the contracts' routes: POST only (a GET of the path is the List method).
            *(Route(u.path, uploads.answer, methods=["POST"]) for u in uploaded),
            Route("/{path:path}", contracts.answer, methods=VERBS),
        ],
        lifespan=lifespan,
        middleware=[Middleware(HttpMetrics, metrics=gateway.context.metrics)],
        exception_handlers={Exception: unexpected},
    )
    return observed(app)
