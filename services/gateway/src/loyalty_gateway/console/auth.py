"""Who is signed in, and the CSRF check of every request that may change something.

`Guard` wraps the console's routes. It finds the session of the cookie (only its sha256 is
stored), sends a browser without one to the sign-in page, and refuses (403) every non-GET
unless both hold:
- the synchroniser token: `X-CSRF-Token` (htmx, from console.js) or the `csrf` form field equals
  the session's token (before sign-in: the pre-session cookie's, for the sign-in form);
- the request comes from this site: `Origin` names the host it was sent to (without Origin,
  `Sec-Fetch-Site: same-origin`).
A GET never changes anything.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit

from loyalty_kit.uow import UnitOfWork
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loyalty_gateway.console.operators import Operator, OperatorStore, Policy, Session, SignIn

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
PUBLIC = ("/login", "/language")  # reachable before sign-in, with the static files
SAFE = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Cookies:
    """The console's cookie names and attributes: `__Host-` names and Secure, unless the
    development setting serves plain http."""

    secure: bool

    @property
    def session(self) -> str:
        return "__Host-loyalty_console" if self.secure else "loyalty_console"

    @property
    def pre(self) -> str:
        return "__Host-loyalty_console_pre" if self.secure else "loyalty_console_pre"

    @property
    def path(self) -> str:
        return "/" if self.secure else "/console"

    def set(self, response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=self.path,
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def clear(self, response: Response, name: str) -> None:
        response.delete_cookie(
            name, path=self.path, secure=self.secure, httponly=True, samesite="strict"
        )


class Accounts(Protocol):
    """Operators' sign-in and sessions (the database's, or a fake in the fast tests)."""

    async def sign_in(self, login: str, password: str, now: datetime) -> SignIn: ...
    async def open_session(self, operator: Operator, now: datetime) -> tuple[str, Session]: ...
    async def session_of(self, cookie: str, now: datetime) -> Session | None: ...
    async def end_session(self, cookie: str, now: datetime) -> None: ...


class DatabaseAccounts:
    """Accounts in the gateway's database, each step its own short transaction."""

    def __init__(self, uow: Callable[[], UnitOfWork], policy: Policy) -> None:
        self.uow = uow
        self.policy = policy

    async def sign_in(self, login: str, password: str, now: datetime) -> SignIn:
        async with self.uow() as uow:
            outcome = await OperatorStore(uow.session, self.policy).sign_in(login, password, now)
            await uow.commit()  # a failure is counted too
        return outcome

    async def open_session(self, operator: Operator, now: datetime) -> tuple[str, Session]:
        async with self.uow() as uow:
            opened = await OperatorStore(uow.session, self.policy).open_session(operator, now)
            await uow.commit()
        return opened

    async def session_of(self, cookie: str, now: datetime) -> Session | None:
        async with self.uow() as uow:
            found = await OperatorStore(uow.session, self.policy).session_of(cookie, now)
            await uow.commit()
        return found

    async def end_session(self, cookie: str, now: datetime) -> None:
        async with self.uow() as uow:
            await OperatorStore(uow.session, self.policy).end_session(cookie, now)
            await uow.commit()


def same_origin(headers: Headers) -> bool:
    """Whether a request comes from a page of this site: its Origin's host is the Host it was
    sent to (or, without Origin, the browser says same-origin)."""
    origin = headers.get("origin")
    if origin is None:
        return headers.get("sec-fetch-site") == "same-origin"
    host = headers.get("host", "")
    parts = urlsplit(origin)
    return bool(host) and parts.scheme in ("http", "https") and parts.netloc == host


def csrf_matches(expected: str | None, provided: str | None) -> bool:
    if not expected or not provided:
        return False
    return hmac.compare_digest(expected.encode(), provided.encode())


def relative_path(scope: Scope) -> str:
    root = scope.get("root_path", "")
    path: str = scope["path"]
    return path[len(root) :] if root and path.startswith(root) else path


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        accounts: Accounts,
        cookies: Cookies,
        clock: Callable[[], datetime],
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.accounts = accounts
        self.cookies = cookies
        self.clock = clock
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cookies = cookie_parser(headers.get("cookie", ""))
        path = relative_path(scope)
        public = path in PUBLIC or path.startswith("/static/")
        session: Session | None = None
        cookie = cookies.get(self.cookies.session)
        if cookie and not path.startswith("/static/"):
            session = await self.accounts.session_of(cookie, self.clock())
        scope.setdefault("state", {})["console_session"] = session
        if session is None and not public:  # nothing happens before sign-in: no CSRF to check
            await _to_sign_in(scope, headers, path)(scope, receive, send)
            return
        method = scope["method"]
        if method not in SAFE:
            body = await _read(receive, self.max_body_bytes)
            if body is None:
                await PlainTextResponse("request body too large", 413)(scope, receive, send)
                return
            expected = session.csrf_token if session else cookies.get(self.cookies.pre)
            provided = headers.get(CSRF_HEADER) or _form_field(headers, body, CSRF_FIELD)
            if not same_origin(headers) or not csrf_matches(expected, provided):
                await PlainTextResponse("refused: cross-site request (CSRF)", 403)(
                    scope, receive, send
                )
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


def _to_sign_in(scope: Scope, headers: Headers, path: str) -> Response:
    root = scope.get("root_path", "")
    target = f"{root}/login"
    if path not in ("", "/") and scope["method"] == "GET":
        from urllib.parse import urlencode

        query = scope.get("query_string", b"").decode("latin-1")
        target += "?" + urlencode({"next": path + (f"?{query}" if query else "")})
    if headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


async def _read(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, following: Receive) -> Receive:
    """The body read once, then the connection's own messages: a streamed answer waits on
    them for a real disconnect (an immediate one would end it at its first chunk)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await following()

    return receive


def _form_field(headers: Headers, body: bytes, name: str) -> str | None:
    if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        if key == name:
            return value
    return None


def form(body: bytes) -> dict[str, str]:
    """An urlencoded form's fields (the first of each name)."""
    fields: dict[str, str] = {}
    for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        fields.setdefault(key, value)
    return fields


def new_token() -> str:
    return secrets.token_urlsafe(32)
