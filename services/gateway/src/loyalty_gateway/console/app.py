"""The back-office console: a Starlette app mounted at /console in the gateway's HTTP app.

Server-rendered pages (Jinja2, autoescaped) with htmx, every asset shipped in this package
(static/, static/vendor/ with VENDOR.txt). Sign-in, sign-out, the language switch and the home
page are here; every other page registers its routes in its own `pages/<page>.py`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from loyalty_kit.auth import ServiceCredentials
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from loyalty_gateway.console import i18n, journal, pages
from loyalty_gateway.console.auth import Accounts, Cookies, Guard, form, new_token
from loyalty_gateway.console.headers import SecurityHeaders
from loyalty_gateway.console.render import Console, console_of, environment, render, session_of
from loyalty_gateway.settings import GatewaySettings

STATIC = Path(__file__).parent / "static"
LANG_MAX_AGE = 365 * 86_400


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def _always(_address: str) -> bool:
    return True


def _next(value: str | None, base: str) -> str:
    """Where to go after sign-in or a language switch: a path of the console only."""
    if value and value.startswith("/") and not value.startswith("//"):
        parts = urlsplit(value)
        if not parts.scheme and not parts.netloc and "\\" not in value:
            return base + value
    return base + "/"


async def login_page(request: Request) -> Response:
    return _login(request)


def _login(request: Request, error: str = "", status: int = 200, login: str = "") -> Response:
    console = console_of(request)
    if session_of(request) is not None and not error:
        return RedirectResponse(request.scope.get("root_path", "") + "/", status_code=303)
    pre = request.cookies.get(console.cookies.pre) or new_token()
    response = render(
        request,
        "login.html",
        {"error": error, "login": login, "next": request.query_params.get("next", "")},
        status,
        pre_token=pre,
    )
    console.cookies.set(response, console.cookies.pre, pre)
    return response


async def sign_in(request: Request) -> Response:
    console = console_of(request)
    fields = form(await request.body())
    login = fields.get("login", "")[:200]
    address = request.client.host if request.client else "unknown"
    if not await console.sign_in_allowed(address):
        return _login(request, "login.too_many", 429, login)
    outcome = await console.accounts.sign_in(login, fields.get("password", ""), console.clock())
    await journal.record_sign_in(console, outcome)
    if outcome.operator is None:
        error = "login.locked" if outcome.outcome == "locked" else "login.wrong"
        return _login(request, error, 401, login)
    cookie, _ = await console.accounts.open_session(outcome.operator, console.clock())
    base = request.scope.get("root_path", "")
    response = RedirectResponse(_next(fields.get("next"), base), status_code=303)
    console.cookies.set(response, console.cookies.session, cookie)
    return response


async def sign_out(request: Request) -> Response:
    console = console_of(request)
    cookie = request.cookies.get(console.cookies.session)
    if cookie:
        await console.accounts.end_session(cookie, console.clock())
        session = session_of(request)
        await journal.record_sign_out(console, session.operator if session else None)
    response = RedirectResponse(request.scope.get("root_path", "") + "/login", status_code=303)
    console.cookies.clear(response, console.cookies.session)
    return response


async def switch_language(request: Request) -> Response:
    console = console_of(request)
    fields = form(await request.body())
    lang = i18n.language(fields.get("lang"))
    base = request.scope.get("root_path", "")
    response = RedirectResponse(_next(fields.get("next"), base), status_code=303)
    response.set_cookie(
        i18n.COOKIE,
        lang,
        max_age=LANG_MAX_AGE,
        path=console.cookies.path,
        secure=console.cookies.secure,
        httponly=True,
        samesite="strict",
    )
    return response


async def home(request: Request) -> Response:
    return render(request, "home.html")


async def not_found(request: Request, _exc: Exception) -> Response:
    return render(request, "error.html", {"status": 404}, 404)


def build_console(
    accounts: Accounts,
    config: GatewaySettings,
    *,
    credentials: ServiceCredentials | None = None,
    backends: object = None,
    clock: Callable[[], datetime] = _utc_now,
    sign_in_allowed: Callable[[str], Awaitable[bool]] | None = None,
    members: object = None,
    audit_log: object = None,
    audit_write: object = None,
    job_runs: object = None,
) -> ASGIApp:
    """The console app. `sign_in_allowed(address)` counts a sign-in attempt from a client
    address and says whether it may go on (the gateway's rate limits; always, if None)."""
    cookies = Cookies(secure=not config.console_insecure_cookies)
    app = Starlette(
        routes=[
            Route("/", home),
            Route("/login", login_page, methods=["GET"]),
            Route("/login", sign_in, methods=["POST"]),
            Route("/logout", sign_out, methods=["POST"]),
            Route("/language", switch_language, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="console-static"),
            *pages.routes(),
        ],
        exception_handlers={404: not_found},
    )
    app.state.console = Console(
        accounts=accounts,
        cookies=cookies,
        clock=clock,
        credentials=credentials,
        backends=backends,
        sign_in_allowed=sign_in_allowed or _always,
        nav=pages.navigation(),
        templates=environment(),
        members=members,
        audit_log=audit_log,
        audit_write=audit_write,
        job_runs=job_runs,
    )
    guarded = Guard(app, accounts, cookies, clock, config.max_body_bytes)
    return SecurityHeaders(guarded)
