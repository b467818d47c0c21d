"""The console's sign-in, sessions and CSRF without a server: the lock-out and timeouts as
pure functions, roles to scopes, and the console app (Starlette's TestClient) over in-memory
accounts: CSRF refused without the token or from another origin, sessions in HttpOnly
SameSite=Strict cookies, the security headers, and the languages' keys."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from loyalty_gateway.console import i18n
from loyalty_gateway.console.app import build_console
from loyalty_gateway.console.backend import CLIENT_ID, operator_caller, operator_metadata
from loyalty_gateway.console.headers import CSP
from loyalty_gateway.console.operators import (
    Operator,
    Policy,
    Session,
    SignIn,
    after_failure,
    check_password,
    session_open,
)
from loyalty_gateway.console.roles import RoleError, may, scopes_of, unit_for
from loyalty_gateway.settings import GatewaySettings
from loyalty_kit import scopes
from loyalty_kit.auth import ServiceCredentials
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = Policy()
PASSWORD = "correct horse battery"


def test_five_failures_lock_for_fifteen_minutes() -> None:
    failed, locked = 0, None
    for _ in range(4):
        failed, locked = after_failure(failed, NOW, POLICY)
        assert locked is None
    failed, locked = after_failure(failed, NOW, POLICY)
    assert locked == NOW + timedelta(minutes=15)
    assert failed == 0


def test_sessions_end_when_idle_past_their_end_or_signed_out() -> None:
    expires = NOW + POLICY.absolute
    assert session_open(NOW, expires, None, NOW + timedelta(minutes=29), POLICY)
    assert not session_open(NOW, expires, None, NOW + timedelta(minutes=31), POLICY)
    busy = expires - timedelta(seconds=1)
    assert not session_open(busy, expires, None, expires, POLICY)
    assert not session_open(NOW, expires, NOW, NOW + timedelta(seconds=1), POLICY)


def test_roles_map_to_the_kits_scopes_and_a_unit() -> None:
    assert scopes_of("group_admin") == {scopes.ADMIN}
    assert scopes_of("analyst") == {scopes.INSIGHTS_GROUP, scopes.ENGAGEMENT_READ}
    # Personal data only when shown on purpose.
    assert scopes.PERSONAL_DATA_READ not in scopes_of("customer_service")
    assert scopes.PERSONAL_DATA_READ in scopes_of("customer_service", personal_data=True)
    assert scopes.PERSONAL_DATA_READ not in scopes_of("analyst", personal_data=True)
    assert scopes_of("unit_manager") >= {scopes.POINTS_ADJUST, scopes.INSIGHTS_READ}
    assert every_scope_known()
    assert unit_for("unit_manager", "hotel") == "hotel"
    assert unit_for("analyst", None) == "group"
    with pytest.raises(RoleError):
        unit_for("unit_manager", None)
    with pytest.raises(RoleError):
        unit_for("customer_service", "hotel")
    with pytest.raises(RoleError):
        unit_for("janitor", None)
    assert may("group_admin", "programme") and not may("analyst", "members")


def every_scope_known() -> bool:
    from loyalty_gateway.console.roles import ROLES

    return all(s in scopes.REGISTRY for r in ROLES.values() for s in r.scopes)


def test_the_operators_calls_carry_its_role_and_unit() -> None:
    operator = Operator(str(uuid.uuid4()), "m", "unit_manager", "hotel")
    caller = operator_caller(operator)
    assert (caller.unit, caller.client_id) == ("hotel", CLIENT_ID)
    assert caller.scopes == scopes_of("unit_manager")
    headers = dict(operator_metadata(ServiceCredentials("console", None), operator, reason="why"))
    assert headers["x-loyalty-unit"] == "hotel"
    assert headers["x-loyalty-reason-bin"] == b"why"


def test_passwords_are_long() -> None:
    with pytest.raises(ValueError):
        check_password("short")


def test_every_language_has_the_same_keys() -> None:
    keys = [set(i18n.catalogue(lang)) for lang in i18n.LANGS]
    assert keys[0] and all(k == keys[0] for k in keys)


@dataclass
class MemoryAccounts:
    """The Accounts protocol in memory, with the same policy functions."""

    operators: dict[str, tuple[Operator, str]] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    locked: dict[str, datetime] = field(default_factory=dict)
    sessions: dict[str, tuple[Session, datetime, datetime | None]] = field(default_factory=dict)

    def add(self, login: str, role: str = "group_admin", unit: str = "group") -> Operator:
        op = Operator(str(uuid.uuid4()), login, role, unit)
        self.operators[login] = (op, PASSWORD)
        return op

    async def sign_in(self, login: str, password: str, now: datetime) -> SignIn:
        if login not in self.operators:
            return SignIn("wrong")
        if self.locked.get(login, now) > now:
            return SignIn("locked")
        op, right = self.operators[login]
        if password != right:
            self.failed[login], until = after_failure(self.failed.get(login, 0), now, POLICY)
            if until:
                self.locked[login] = until
            return SignIn("locked" if until else "wrong")
        return SignIn("signed_in", op)

    async def open_session(self, operator: Operator, now: datetime) -> tuple[str, Session]:
        cookie = secrets.token_urlsafe(8)
        session = Session(operator, secrets.token_urlsafe(8), now, now + POLICY.absolute)
        self.sessions[cookie] = (session, now, None)
        return cookie, session

    async def session_of(self, cookie: str, now: datetime) -> Session | None:
        found = self.sessions.get(cookie)
        if found is None or not session_open(found[1], found[0].expires_at, found[2], now, POLICY):
            return None
        return found[0]

    async def end_session(self, cookie: str, now: datetime) -> None:
        if cookie in self.sessions:
            session, seen, _ = self.sessions[cookie]
            self.sessions[cookie] = (session, seen, now)


BASE = "http://testserver"
SAME = {"Origin": BASE}


def client(accounts: MemoryAccounts, clock: list[datetime] | None = None) -> TestClient:
    times = clock or [NOW]
    config = GatewaySettings(console_insecure_cookies=True)
    console = build_console(accounts, config, clock=lambda: times[0])
    return TestClient(Starlette(routes=[Mount("/console", console)]), base_url=BASE)


def pre_token(http: TestClient) -> str:
    page = http.get("/console/login")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def signed_in(http: TestClient, login: str) -> str:
    token = pre_token(http)
    answer = http.post(
        "/console/login",
        data={"csrf": token, "login": login, "password": PASSWORD},
        headers=SAME,
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    home = http.get("/console/")
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', home.text)
    assert found
    return found.group(1)


def test_pages_need_a_session_and_sign_in_sets_a_strict_cookie() -> None:
    accounts = MemoryAccounts()
    login = f"op-{uuid.uuid4().hex[:8]}"
    accounts.add(login)
    http = client(accounts)
    answer = http.get("/console/members", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/console/login?next=%2Fmembers")
    token = pre_token(http)
    answer = http.post(
        "/console/login",
        data={"csrf": token, "login": login, "password": PASSWORD, "next": "/members"},
        headers=SAME,
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/console/members"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("loyalty_console=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert http.get("/console/members").status_code == 200


def test_secure_cookies_unless_the_development_setting() -> None:
    accounts = MemoryAccounts()
    config = GatewaySettings(console_insecure_cookies=False)
    console = build_console(accounts, config, clock=lambda: NOW)
    http = TestClient(Starlette(routes=[Mount("/console", console)]), base_url="https://t")
    cookie = http.get("/console/login").headers["set-cookie"]
    assert cookie.startswith("__Host-loyalty_console_pre=")
    assert "Secure" in cookie and "Path=/;" in cookie


def test_a_post_without_the_token_or_from_elsewhere_is_refused() -> None:
    accounts = MemoryAccounts()
    login = f"op-{uuid.uuid4().hex[:8]}"
    accounts.add(login)
    http = client(accounts)
    csrf = signed_in(http, login)
    # No token.
    assert http.post("/console/logout", headers=SAME).status_code == 403
    # A wrong token.
    assert http.post("/console/logout", data={"csrf": "x"}, headers=SAME).status_code == 403
    # The right token from another site, or with no Origin and no Sec-Fetch-Site.
    other = {"Origin": "https://evil.example"}
    assert http.post("/console/logout", data={"csrf": csrf}, headers=other).status_code == 403
    assert http.post("/console/logout", data={"csrf": csrf}).status_code == 403
    # The sign-in form has its own token too.
    bare = http.post("/console/login", data={"login": login, "password": PASSWORD}, headers=SAME)
    assert bare.status_code == 403
    assert http.get("/console/").status_code == 200  # still signed in
    # The header (htmx) or the field, from this site.
    fetch = {"Sec-Fetch-Site": "same-origin", "X-CSRF-Token": csrf}
    answer = http.post("/console/logout", headers=fetch, follow_redirects=False)
    assert answer.status_code == 303
    assert http.get("/console/", follow_redirects=False).status_code == 303


def test_wrong_passwords_lock_the_operator_and_sessions_time_out() -> None:
    accounts = MemoryAccounts()
    login = f"op-{uuid.uuid4().hex[:8]}"
    accounts.add(login)
    clock = [NOW]
    http = client(accounts, clock)
    token = pre_token(http)
    for attempt in range(5):
        answer = http.post(
            "/console/login",
            data={"csrf": token, "login": login, "password": "wrong password!"},
            headers=SAME,
        )
        assert answer.status_code == 401
        assert ("锁定" in answer.text) == (attempt == 4)
    right = {"csrf": token, "login": login, "password": PASSWORD}
    assert "锁定" in http.post("/console/login", data=right, headers=SAME).text
    clock[0] = NOW + timedelta(minutes=16)
    signed_in(http, login)
    clock[0] += timedelta(minutes=31)
    assert http.get("/console/", follow_redirects=False).status_code == 303
    # A form sent after the session ended goes to the sign-in page, and does nothing.
    late = http.post("/console/members", data={"csrf": "x"}, headers=SAME, follow_redirects=False)
    assert late.status_code == 303 and late.headers["location"] == "/console/login"


def test_console_responses_carry_the_security_headers_and_no_inline_script() -> None:
    accounts = MemoryAccounts()
    login = f"op-{uuid.uuid4().hex[:8]}"
    accounts.add(login)
    http = client(accounts)
    signed_in(http, login)
    page = http.get("/console/")
    assert page.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["cache-control"] == "no-store"
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
    assert " style=" not in page.text and "<style" not in page.text
    assert not re.search(r"https?://", page.text)


def test_roles_see_only_their_pages() -> None:
    accounts = MemoryAccounts()
    login = f"an-{uuid.uuid4().hex[:8]}"
    accounts.add(login, "analyst")
    http = client(accounts)
    signed_in(http, login)
    assert http.get("/console/dashboards").status_code == 200
    assert http.get("/console/members").status_code == 403
    assert 'href="/console/members"' not in http.get("/console/").text


def test_the_language_switch_and_escaped_data() -> None:
    accounts = MemoryAccounts()
    login = f"<b>x{uuid.uuid4().hex[:6]}"
    accounts.add(login)
    http = client(accounts)
    signed_in(http, login)
    home = http.get("/console/")
    assert '<html lang="zh-CN">' in home.text
    assert "<b>x" not in home.text and "&lt;b&gt;x" in home.text
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', home.text)
    assert csrf
    http.post(
        "/console/language", data={"csrf": csrf.group(1), "lang": "en", "next": "/"}, headers=SAME
    )
    assert '<html lang="en">' in http.get("/console/").text


def test_vendored_assets_match_their_hashes_and_nothing_is_fetched_from_elsewhere() -> None:
    import hashlib
    from pathlib import Path

    import loyalty_gateway.console as package

    root = Path(package.__file__).parent
    vendor = root / "static" / "vendor"
    lines = [x for x in (vendor / "VENDOR.txt").read_text().splitlines() if x[:1] != "#"]
    assert {line.split()[0] for line in lines} == {"htmx.org", "echarts"}
    for line in lines:
        _name, _version, digest, _licence, file = line.split()
        assert hashlib.sha256((vendor / file).read_bytes()).hexdigest() == digest
    for template in (root / "templates").rglob("*.html"):
        text = template.read_text()
        assert not re.search(r"https?://", text), template
        assert "|safe" not in text.replace(" ", ""), template


def test_sign_ins_from_one_address_are_limited_whatever_the_login() -> None:
    accounts = MemoryAccounts()
    seen: list[str] = []

    async def allowed(address: str) -> bool:
        seen.append(address)
        return len(seen) <= 3

    config = GatewaySettings(console_insecure_cookies=True)
    console = build_console(accounts, config, clock=lambda: NOW, sign_in_allowed=allowed)
    http = TestClient(Starlette(routes=[Mount("/console", console)]), base_url=BASE)
    token = pre_token(http)
    for attempt in range(4):
        login = f"op-{uuid.uuid4().hex[:8]}"  # a new login each time: no lock-out helps
        accounts.add(login)
        answer = http.post(
            "/console/login",
            data={"csrf": token, "login": login, "password": "guess guess guess"},
            headers=SAME,
        )
        assert answer.status_code == (401 if attempt < 3 else 429)
    assert "登录尝试过于频繁" in answer.text
    assert seen == ["testclient"] * 4
