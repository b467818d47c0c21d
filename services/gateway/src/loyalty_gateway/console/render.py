"""Rendering a console page: Jinja2 with autoescape always on (data is never marked safe), the
operator's language, the CSRF token, and the navigation the operator's role may see."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from loyalty_kit.auth import ServiceCredentials
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from loyalty_gateway.console import i18n, journal
from loyalty_gateway.console.auth import Accounts, Cookies
from loyalty_gateway.console.operators import Operator, Session
from loyalty_gateway.console.roles import may

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class NavItem:
    key: str  # its label is `nav.<key>` in the locale files
    path: str  # under /console
    action: str  # the role's action that shows it (roles.ACTIONS)


@dataclass
class Console:
    """What the console's pages share (the sub-app's `state.console`)."""

    accounts: Accounts
    cookies: Cookies
    clock: Callable[[], datetime]
    credentials: ServiceCredentials | None  # calls to the services as an operator (backend.py)
    backends: Any  # the gateway's Backends (channels to the services), None in fast tests
    sign_in_allowed: Callable[[str], Awaitable[bool]]  # counts an address's sign-in attempts
    nav: list[NavItem]
    templates: Environment
    members: Any = None  # the member pages' MemberActions (flows/member360.py), None in fast tests
    audit_log: Any = None  # the gateway's AuditLog (adapters/audit_log.py), None in fast tests
    audit_write: Any = None  # its direct writer of one entry (the console's own), or None
    job_runs: Any = None  # the stepped jobs' JobRunner (runner.py), None in fast tests


def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def session_of(request: Request) -> Session | None:
    found: Session | None = request.scope.get("state", {}).get("console_session")
    return found


def operator_of(request: Request) -> Operator:
    """The signed-in operator of a request a page's `requires` let in."""
    session = session_of(request)
    assert session is not None  # `requires` let the request in
    return session.operator


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
    pre_token: str | None = None,
) -> HTMLResponse:
    console = console_of(request)
    lang = i18n.language(request.cookies.get(i18n.COOKIE))
    session = session_of(request)
    base = request.scope.get("root_path", "")
    csrf = session.csrf_token if session else (pre_token or "")
    nav = [n for n in console.nav if may(session.operator.role, n.action)] if session else []
    here = request.url.path[len(base) :] or "/"
    page = console.templates.get_template(template).render(
        t=i18n.translator(lang),
        lang=lang,
        langs=i18n.LANGS,
        base=base,
        csrf=csrf,
        session=session,
        operator=session.operator if session else None,
        nav=nav,
        here=here,
        **(context or {}),
    )
    return HTMLResponse(page, status_code=status_code)


Endpoint = Callable[[Request], Awaitable[Response]]


async def refused_for_role(request: Request, action: str) -> HTMLResponse:
    """The 403 page of a page or action the operator's role may not use, after its entry in
    the audit log (who, what was asked; the member's id where the path names one)."""
    session = session_of(request)
    if session is not None:
        await journal.record_refusal(
            console_of(request),
            request,
            session.operator,
            journal.REFUSED_FOR_ROLE,
            action,
            member=str(request.path_params.get("member_id", "")),
        )
    return render(request, "error.html", {"status": 403}, 403)


def requires(action: str) -> Callable[[Endpoint], Endpoint]:
    """A page for the roles that may do `action`; others get a 403 page (and an audit entry)."""

    def wrap(endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            session = session_of(request)
            if session is None or not may(session.operator.role, action):
                return await refused_for_role(request, action)
            return await endpoint(request)

        return guarded

    return wrap


def coming(key: str, action: str) -> Endpoint:
    """The placeholder of a page a later change builds."""

    @requires(action)
    async def page(request: Request) -> Response:
        return render(request, "coming.html", {"page": key})

    return page
