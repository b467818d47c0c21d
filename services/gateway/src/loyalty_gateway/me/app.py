"""The member's page: a Starlette app mounted at /me in the gateway's HTTP app, the console's
stack (Jinja2 autoescaped, htmx from the console's vendored file, the same security headers and
CSRF rules), for a member's phone.

- Sign in: the phone, then the code sent by SMS (identity's MemberSignInService, called by
  the gateway on its own account with the member's device address: calls.py). A refusal is
  said in words; asking a code answers the same whether the phone is a member's or not.
- Then one page: the member code as a QR code and a barcode (refreshed by htmx as the code's
  step passes) with a button to rotate it (a new secret: a code someone else saw stops
  working), the points balance and what expires when (the first lots, the rest on the lots
  page, a page at a time), active coupons, and consents per purpose with grant and withdraw
  and their history. Every call is made with the member's own token.

The member's tokens live in the page's sealed cookie (cookie.py), refreshed before the access
token runs out (tokens.py). Every POST needs the cookie's CSRF token (form field `csrf` or
`X-CSRF-Token`) and to come from this site, as in the console.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

import grpc
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from loyalty.identity.v1 import member_code_pb2 as code_pb
from loyalty.identity.v1 import member_pb2
from loyalty_kit.logs import get_logger
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from loyalty_gateway.console.app import STATIC as CONSOLE_STATIC
from loyalty_gateway.console.auth import csrf_matches, form, same_origin
from loyalty_gateway.console.headers import SecurityHeaders
from loyalty_gateway.me import codes, i18n
from loyalty_gateway.me.calls import PURPOSES, Lots, Overview, Refusal, Started
from loyalty_gateway.me.cookie import Cookie, State, Tokens, utc_now
from loyalty_gateway.me.tokens import Refresher, SessionEnded, SignedOut

log = get_logger("loyalty.gateway.me")

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
CSRF_HEADER = "x-csrf-token"
LANG_MAX_AGE = 365 * 86_400
CHINA = timezone(timedelta(hours=8))  # the page's dates and times, as the group's members read them
REQUEST_ID_MAX = 64
PAGE_TOKEN_MAX = 512
LATEST = "me_latest_state"  # the request's state after a refresh (request.scope["state"])


class Calls(Protocol):
    """The services as the page calls them (calls.ServiceCalls, or a fake in fast tests)."""

    async def start(self, phone: str, client_address: str) -> Started: ...
    async def verify(self, challenge: str, code: str, unit: str) -> tuple[str, Tokens]: ...
    async def refresh(self, refresh_token: str) -> Tokens: ...
    async def sign_out(self, refresh_token: str) -> None: ...
    async def member_code(self, member: str, tokens: Tokens) -> code_pb.MemberCode: ...
    async def overview(self, member: str, tokens: Tokens) -> Overview: ...
    async def lots(self, member: str, tokens: Tokens, page_token: str) -> Lots: ...
    async def rotate_code(
        self, member: str, tokens: Tokens, request_id: str
    ) -> code_pb.MemberCode: ...
    async def set_consent(
        self, member: str, tokens: Tokens, purpose: int, granted: bool, request_id: str
    ) -> None: ...


@dataclass
class Me:
    """What the page's routes share (the app's `state.me`)."""

    calls: Calls
    cookie: Cookie
    refresher: Refresher
    signed_out: SignedOut
    clock: Callable[[], datetime]
    unit: str  # where a member's first sign-in registers them
    attempt_allowed: Callable[[str], Awaitable[bool]]  # counts an address's sign-in steps
    templates: Environment
    max_body_bytes: int


def me_of(request: Request) -> Me:
    found: Me = request.app.state.me
    return found


def _base(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# Reading the cookie, and the member's tokens kept fresh.


async def _state(request: Request) -> State:
    """The cookie's state; a fresh one when there is none, it does not open, or its session
    was signed out."""
    me = me_of(request)
    state = me.cookie.open(request.cookies.get(me.cookie.name))
    if state is None:
        return State.fresh()
    if state.tokens is not None and await me.signed_out.has(state.tokens.session):
        return State(csrf=state.csrf)
    return state


async def _signed_in(request: Request, state: State) -> State | None:
    """The state with tokens good for a while, or None when not signed in (any more)."""
    if state.tokens is None or not state.member:
        return None
    try:
        tokens = await me_of(request).refresher.current(state.tokens)
    except SessionEnded:
        return None
    signed = state.with_tokens(tokens)
    request.scope.setdefault("state", {})[LATEST] = signed
    return signed


def _latest(request: Request, state: State) -> State:
    """The state with the tokens of a refresh made during this request, if any: a page that
    fails after a refresh still keeps the new tokens (the old refresh token is used up)."""
    found: State | None = request.scope.get("state", {}).get(LATEST)
    return found if found is not None else state


def refresh_with(calls: Calls) -> Callable[[str], Awaitable[Tokens]]:
    """The Refresher's call: a refused refresh token ends the page's session; identity not
    answering stays a Refusal (the page says so, the cookie is kept)."""

    async def refresh(refresh_token: str) -> Tokens:
        try:
            return await calls.refresh(refresh_token)
        except Refusal as refusal:
            if refusal.code in (
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.NOT_FOUND,
            ):
                raise SessionEnded() from None
            raise

    return refresh


# Rendering.


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, CHINA).strftime("%Y-%m-%d %H:%M")


def _day(stamp: Any) -> str:
    if not stamp.seconds:
        return ""
    return datetime.fromtimestamp(stamp.seconds, CHINA).strftime("%Y-%m-%d")


def _moment(stamp: Any) -> str:
    return _when(stamp.seconds) if stamp.seconds else ""


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["day"] = _day
    env.filters["moment"] = _moment
    return env


def render(
    request: Request,
    template: str,
    state: State,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """A page or fragment, with the state written back to the cookie."""
    me = me_of(request)
    lang = i18n.language(request.cookies.get(i18n.COOKIE))
    page = me.templates.get_template(template).render(
        t=i18n.translator(lang),
        lang=lang,
        langs=i18n.LANGS,
        base=_base(request),
        csrf=state.csrf,
        signed_in=state.tokens is not None,
        **(context or {}),
    )
    response = HTMLResponse(page, status_code=status_code)
    me.cookie.set(response, state, me.clock())
    return response


def _home(request: Request) -> RedirectResponse:
    return RedirectResponse(_base(request) + "/", status_code=303)


def _to_sign_in(request: Request, state: State) -> Response:
    """Not signed in: the sign-in form (an htmx request is sent there whole)."""
    fresh = replace(state, member="", tokens=None)
    if request.headers.get("hx-request"):
        response: Response = Response(
            status_code=401, headers={"HX-Redirect": _base(request) + "/"}
        )
        me_of(request).cookie.set(response, fresh, me_of(request).clock())
        return response
    return _sign_in_form(request, fresh)


def _sign_in_form(
    request: Request, state: State, error: str = "", status: int = 200, **values: object
) -> Response:
    me = me_of(request)
    now = me.clock().timestamp()
    waiting = bool(state.challenge) and state.challenge_expires > now
    if state.challenge and not waiting:  # the code ran out: ask a new one
        state = State(csrf=state.csrf, phone=state.phone)
        error = error or "sign_in.code_expired"
    context = {"error": error, "values": values, "waiting": waiting, "phone": state.phone}
    return render(request, "sign_in.html", state, context, status)


def _unavailable(request: Request, state: State) -> Response:
    return render(request, "unavailable.html", state, {}, 503)


# Routes.


async def home(request: Request) -> Response:
    state = await _state(request)
    try:
        signed = await _signed_in(request, state)
        if signed is None:
            return _to_sign_in(request, state)
        assert signed.tokens is not None
        me = me_of(request)
        overview = await me.calls.overview(signed.member, signed.tokens)
        code = await me.calls.member_code(signed.member, signed.tokens)
    except Refusal as refusal:
        return _refused(request, state, refusal)
    return render(
        request, "page.html", signed, {**_code_context(request, code), **_overview(overview)}
    )


def _refused(request: Request, state: State, refusal: Refusal) -> Response:
    """A service refused the member's token (signed out elsewhere, suspended): sign in again;
    a service not answering: the page says so and keeps the cookie."""
    state = _latest(request, state)
    if refusal.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return _to_sign_in(request, state)
    log.warning("member page: a service refused", code=refusal.code.name, reason=refusal.reason)
    return _unavailable(request, state)


def _code_context(request: Request, code: code_pb.MemberCode) -> dict[str, Any]:
    t = i18n.translator(i18n.language(request.cookies.get(i18n.COOKIE)))
    now = me_of(request).clock().timestamp()
    refresh_after = code.refresh_after.seconds + code.refresh_after.nanos / 1e9
    # Asked again as the step passes (a moment after, to get the next step's code); the code
    # shown stays good at a till until valid_until, the end of the next step.
    wait = max(1, min(30, round(refresh_after - now + 1)))
    return {
        "code": code,
        "grouped": codes.grouped(code.code),
        "qr": codes.qr_svg(code.qr_payload, t("code.qr_title")),
        "bars": codes.barcode_svg(code.code, t("code.bar_title")),
        "wait": wait,
    }


def _overview(overview: Overview) -> dict[str, Any]:
    consents = {c.purpose: c for c in overview.member.consents}
    purposes = [
        {
            "key": member_pb2.ConsentPurpose.Name(purpose),
            "granted": bool(consents.get(purpose) and consents[purpose].granted),
            "since": consents[purpose].update_time if purpose in consents else None,
            "request_id": str(uuid.uuid4()),
        }
        for purpose in PURPOSES
    ]
    lots = [lot for lot in overview.lots if lot.remaining_points > 0]
    return {
        "balance": overview.balance,
        "lots": lots,
        "more_lots": overview.more_lots,
        "rotate_request_id": str(uuid.uuid4()),
        "coupons": overview.coupons,
        "purposes": purposes,
        "events": [
            {
                "key": member_pb2.ConsentPurpose.Name(event.purpose),
                "granted": event.granted,
                "source": event.source,
                "at": event.event_time,
            }
            for event in overview.consent_events
        ],
    }


async def code_fragment(request: Request) -> Response:
    state = await _state(request)
    try:
        signed = await _signed_in(request, state)
        if signed is None or signed.tokens is None:
            return _to_sign_in(request, state)
        code = await me_of(request).calls.member_code(signed.member, signed.tokens)
    except Refusal as refusal:
        if refusal.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return _to_sign_in(request, state)
        # Not now: the code shown stays (the till refuses it once it runs out); asked again soon.
        return render(request, "_code_later.html", _latest(request, state), {}, 200)
    return render(request, "_code.html", signed, _code_context(request, code))


async def lots_page(request: Request) -> Response:
    """The member's lots a page at a time (`?page=` the token of the page before)."""
    state = await _state(request)
    page_token = request.query_params.get("page", "")
    if len(page_token) > PAGE_TOKEN_MAX:
        return PlainTextResponse("not a page of this list", 400)
    try:
        signed = await _signed_in(request, state)
        if signed is None or signed.tokens is None:
            return _to_sign_in(request, state)
        found = await me_of(request).calls.lots(signed.member, signed.tokens, page_token)
    except Refusal as refusal:
        if refusal.code == grpc.StatusCode.INVALID_ARGUMENT:
            return PlainTextResponse("not a page of this list", 400)
        return _refused(request, state, refusal)
    lots = [lot for lot in found.lots if lot.remaining_points > 0]
    return render(request, "lots.html", signed, {"lots": lots, "next": found.next_page_token})


Handler = Callable[[Request, State, dict[str, str]], Awaitable[Response]]


def posted(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A POST route: a bounded body, from this site, with the cookie's CSRF token."""

    async def endpoint(request: Request) -> Response:
        me = me_of(request)
        body = await _read(request, me.max_body_bytes)
        if body is None:
            return PlainTextResponse("request body too large", 413)
        state = await _state(request)
        fields = form(body) if _is_form(request) else {}
        provided = request.headers.get(CSRF_HEADER) or fields.get("csrf")
        if not same_origin(request.headers) or not csrf_matches(state.csrf, provided):
            return PlainTextResponse("refused: cross-site request (CSRF)", 403)
        try:
            return await handler(request, state, fields)
        except Refusal as refusal:
            return _refused(request, state, refusal)

    return endpoint


def _is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")


async def _read(request: Request, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _allowed(request: Request) -> bool:
    return await me_of(request).attempt_allowed(_address(request))


@posted
async def start(request: Request, state: State, fields: dict[str, str]) -> Response:
    phone = fields.get("phone", "").strip()[:40]
    if not phone:
        return _sign_in_form(request, State(csrf=state.csrf), "sign_in.phone_missing", 400)
    if not await _allowed(request):
        return _sign_in_form(request, State(csrf=state.csrf, phone=phone), "sign_in.busy", 429)
    try:
        started = await me_of(request).calls.start(phone, _address(request))
    except Refusal as refusal:
        error, status, values = _start_refusal(refusal)
        return _sign_in_form(request, State(csrf=state.csrf, phone=phone), error, status, **values)
    waiting = State(csrf=state.csrf).waiting_for(started.challenge, phone, started.expires)
    response = _home(request)
    me_of(request).cookie.set(response, waiting, me_of(request).clock())
    return response


def _start_refusal(refusal: Refusal) -> tuple[str, int, dict[str, object]]:
    if refusal.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return "sign_in.too_many_codes", 429, _wait(refusal.retry_seconds)
    if refusal.code == grpc.StatusCode.INVALID_ARGUMENT:
        return "sign_in.phone_invalid", 400, {}
    if refusal.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return "sign_in.unavailable", 503, {}
    return "sign_in.failed", 400, {}


def _wait(seconds: int) -> dict[str, object]:
    """How long to wait, in words the locale's `wait.*` strings take."""
    seconds = max(1, seconds)
    if seconds < 120:
        return {"wait_key": "wait.seconds", "wait_n": seconds}
    return {"wait_key": "wait.minutes", "wait_n": -(-seconds // 60)}


CODE_REFUSALS = {
    # reason: (message, the challenge is over)
    "CODE_WRONG": ("sign_in.code_wrong", False),
    "CODE_EXHAUSTED": ("sign_in.code_exhausted", True),
    "CODE_EXPIRED": ("sign_in.code_expired", True),
    "CODE_USED": ("sign_in.code_used", True),
    "CHALLENGE_NOT_FOUND": ("sign_in.code_used", True),
    "MEMBER_SUSPENDED": ("sign_in.suspended", True),
}


@posted
async def verify(request: Request, state: State, fields: dict[str, str]) -> Response:
    me = me_of(request)
    code = fields.get("code", "").strip()[:12]
    if not state.challenge:
        return _sign_in_form(request, State(csrf=state.csrf), "sign_in.code_expired", 401)
    if not code:
        return _sign_in_form(request, state, "sign_in.code_missing", 400)
    if not await _allowed(request):
        return _sign_in_form(request, state, "sign_in.busy", 429)
    try:
        member, tokens = await me.calls.verify(state.challenge, code, me.unit)
    except Refusal as refusal:
        if refusal.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return _sign_in_form(request, state, "sign_in.unavailable", 503)
        if refusal.code == grpc.StatusCode.INVALID_ARGUMENT and not refusal.reason.startswith(
            "CODE_"
        ):
            return _sign_in_form(request, state, "sign_in.code_format", 400)
        error, over = CODE_REFUSALS.get(refusal.reason, ("sign_in.failed", True))
        left = refusal.metadata.get("attempts_left", "")
        after = State(csrf=state.csrf, phone=state.phone) if over else state
        return _sign_in_form(request, after, error, 401, left=left)
    response = _home(request)
    me.cookie.set(response, state.signed_in(member, tokens), me.clock())
    return response


@posted
async def restart(request: Request, state: State, fields: dict[str, str]) -> Response:
    """Another phone, or a new code: the challenge is forgotten."""
    response = _home(request)
    me_of(request).cookie.set(response, State(csrf=state.csrf), me_of(request).clock())
    return response


@posted
async def sign_out(request: Request, state: State, fields: dict[str, str]) -> Response:
    me = me_of(request)
    if state.tokens is not None:
        now = me.clock().timestamp()
        try:
            await me.calls.sign_out(state.tokens.refresh)
        except Refusal as refusal:  # already ended, or identity away: the page forgets it anyway
            log.info("member page: sign-out not confirmed", code=refusal.code.name)
        await me.signed_out.add(state.tokens.session, state.tokens.refresh_expires - now)
    response = _home(request)
    me.cookie.clear(response)
    return response


@posted
async def set_consent(request: Request, state: State, fields: dict[str, str]) -> Response:
    me = me_of(request)
    signed = await _signed_in(request, state)
    if signed is None or signed.tokens is None:
        return _to_sign_in(request, state)
    name = fields.get("purpose", "")
    request_id = fields.get("request_id", "")
    if (
        name not in {member_pb2.ConsentPurpose.Name(p) for p in PURPOSES}
        or fields.get("granted") not in ("true", "false")
        or not request_id
        or len(request_id) > REQUEST_ID_MAX
    ):
        return PlainTextResponse("a consent change names a purpose, granted and request_id", 400)
    await me.calls.set_consent(
        signed.member,
        signed.tokens,
        member_pb2.ConsentPurpose.Value(name),
        fields["granted"] == "true",
        request_id,
    )
    if not request.headers.get("hx-request"):
        response = _home(request)
        me.cookie.set(response, signed, me.clock())
        return response
    overview = await me.calls.overview(signed.member, signed.tokens)
    return render(request, "_consents.html", signed, _overview(overview))


@posted
async def rotate_code(request: Request, state: State, fields: dict[str, str]) -> Response:
    """A new member code secret, then the page with the new code (a retried form, the same
    request_id, rotates once)."""
    me = me_of(request)
    signed = await _signed_in(request, state)
    if signed is None or signed.tokens is None:
        return _to_sign_in(request, state)
    request_id = fields.get("request_id", "")
    if not request_id or len(request_id) > REQUEST_ID_MAX:
        return PlainTextResponse("a rotation names a request_id", 400)
    await me.calls.rotate_code(signed.member, signed.tokens, request_id)
    response = _home(request)
    me.cookie.set(response, signed, me.clock())
    return response


@posted
async def switch_language(request: Request, state: State, fields: dict[str, str]) -> Response:
    me = me_of(request)
    response = _home(request)
    response.set_cookie(
        i18n.COOKIE,
        i18n.language(fields.get("lang")),
        max_age=LANG_MAX_AGE,
        path=me.cookie.path,
        secure=me.cookie.secure,
        httponly=True,
        samesite="strict",
    )
    return response


async def not_found(request: Request, _exc: Exception) -> Response:
    return PlainTextResponse("no such page", 404)


async def _always(_address: str) -> bool:
    return True


def build_me(
    calls: Calls,
    cookie: Cookie,
    signed_out: SignedOut,
    *,
    unit: str,
    max_body_bytes: int,
    clock: Callable[[], datetime] = utc_now,
    attempt_allowed: Callable[[str], Awaitable[bool]] | None = None,
) -> ASGIApp:
    """The member page's app. `attempt_allowed(address)` counts a sign-in step (a code asked
    or checked) from a client address and says whether it may go on (always, if None)."""
    app = Starlette(
        routes=[
            Route("/", home, methods=["GET"]),
            Route("/code", code_fragment, methods=["GET"]),
            Route("/code/rotate", rotate_code, methods=["POST"]),
            Route("/lots", lots_page, methods=["GET"]),
            Route("/sign-in", start, methods=["POST"]),
            Route("/sign-in/code", verify, methods=["POST"]),
            Route("/sign-in/restart", restart, methods=["POST"]),
            Route("/sign-out", sign_out, methods=["POST"]),
            Route("/consents", set_consent, methods=["POST"]),
            Route("/language", switch_language, methods=["POST"]),
            Mount(
                "/static/vendor",
                StaticFiles(directory=CONSOLE_STATIC / "vendor"),
                name="me-vendor",
            ),
            Mount("/static", StaticFiles(directory=STATIC), name="me-static"),
        ],
        exception_handlers={404: not_found},
    )
    app.state.me = Me(
        calls=calls,
        cookie=cookie,
        refresher=Refresher(refresh_with(calls), clock),
        signed_out=signed_out,
        clock=clock,
        unit=unit,
        attempt_allowed=attempt_allowed or _always,
        templates=environment(),
        max_body_bytes=max_body_bytes,
    )
    return SecurityHeaders(app)
