"""The member page's server without a server behind it: the sealed cookie, the sign-in steps
and their refusals in words, CSRF, the access token refreshed once however many requests ask
(and a refused refresh signing the page out), sign-out making the old cookie worthless, and the
codes drawn (Code 128 bars that read back as python-barcode's modules). The services are a
fake; tests/me/ drives the page in Chromium against the real ones."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import barcode
import grpc
import pytest
from limits.aio.storage import MemoryStorage
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.identity.v1 import member_code_pb2 as code_pb
from loyalty.identity.v1 import member_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty_gateway.me import codes
from loyalty_gateway.me.app import build_me
from loyalty_gateway.me.calls import Lots, Overview, Refusal, Started
from loyalty_gateway.me.cookie import Cookie, State, Tokens
from loyalty_gateway.me.tokens import Refresher, SessionEnded, SignedOut
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
KEY = bytes(range(32))
CODE = "660123456789012345"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class FakeCalls:
    """identity, points and benefits as the page sees them, counting what it was asked."""

    clock: Clock
    sms_code: str = "246810"
    member: str = "members/m1"
    refreshes: list[str] = field(default_factory=list)
    signed_out: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    consents: dict[int, bool] = field(default_factory=dict)
    consent_requests: set[str] = field(default_factory=set)
    refuse_start: Refusal | None = None
    refuse_refresh: bool = False
    refuse_overview: Refusal | None = None
    attempts: int = 5
    generation: int = 0
    lot_points: list[int] = field(default_factory=list)  # the member's lots, soonest first
    rotations: set[str] = field(default_factory=set)  # request ids of the code's rotations

    def tokens(self) -> Tokens:
        self.generation += 1
        now = self.clock().timestamp()
        return Tokens(
            access=f"access-{self.generation}-{uuid.uuid4().hex}",
            access_expires=now + 600,
            refresh=f"refresh-{self.generation}-{uuid.uuid4().hex}",
            refresh_expires=now + 30 * 86_400,
            session="memberSessions/s1",
        )

    async def start(self, phone: str, client_address: str) -> Started:
        if self.refuse_start is not None:
            raise self.refuse_start
        self.addresses.append(client_address)
        now = self.clock().timestamp()
        return Started("signInChallenges/c1", now + 300, now + 60)

    async def verify(self, challenge: str, code: str, unit: str) -> tuple[str, Tokens]:
        assert unit == "mall"
        if code != self.sms_code:
            self.attempts -= 1
            reason = "CODE_WRONG" if self.attempts else "CODE_EXHAUSTED"
            raise Refusal(
                grpc.StatusCode.FAILED_PRECONDITION, reason, {"attempts_left": str(self.attempts)}
            )
        return self.member, self.tokens()

    async def refresh(self, refresh_token: str) -> Tokens:
        self.refreshes.append(refresh_token)
        await asyncio.sleep(0)  # another request may ask meanwhile
        if self.refuse_refresh:
            raise Refusal(grpc.StatusCode.UNAUTHENTICATED, "REFRESH_TOKEN_REVOKED")
        return self.tokens()

    async def sign_out(self, refresh_token: str) -> None:
        self.signed_out.append(refresh_token)

    def _own(self, member: str, tokens: Tokens) -> None:
        assert member == self.member and tokens.access.startswith("access-")

    async def member_code(self, member: str, tokens: Tokens) -> code_pb.MemberCode:
        self._own(member, tokens)
        found = code_pb.MemberCode(member=member, code=CODE, qr_payload=CODE)
        found.refresh_after.FromDatetime(self.clock() + timedelta(seconds=12))
        return found

    async def overview(self, member: str, tokens: Tokens) -> Overview:
        self._own(member, tokens)
        if self.refuse_overview is not None:
            raise self.refuse_overview
        shown = member_pb2.Member(name=member)
        for purpose, granted in self.consents.items():
            shown.consents.add(purpose=purpose, granted=granted)  # type: ignore[arg-type]
        return Overview(
            shown,
            points_pb.Balance(available=1234, pending=56),
            [points_pb.Lot(remaining_points=n, unit="mall") for n in self.lot_points[:20]],
            [benefits_pb.Coupon(name_zh="满100减10", unit="mall")],
            [],
            more_lots=len(self.lot_points) > 20,
        )

    async def lots(self, member: str, tokens: Tokens, page_token: str) -> Lots:
        self._own(member, tokens)
        if page_token and not page_token.isdigit():
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
        start = int(page_token or 0)
        found = [points_pb.Lot(remaining_points=n, unit="mall") for n in self.lot_points]
        rest = str(start + 50) if len(found) > start + 50 else ""
        return Lots(found[start : start + 50], rest)

    async def rotate_code(self, member: str, tokens: Tokens, request_id: str) -> code_pb.MemberCode:
        self._own(member, tokens)
        self.rotations.add(request_id)
        return await self.member_code(member, tokens)

    async def set_consent(
        self, member: str, tokens: Tokens, purpose: int, granted: bool, request_id: str
    ) -> None:
        self._own(member, tokens)
        if request_id not in self.consent_requests:
            self.consent_requests.add(request_id)
            self.consents[purpose] = granted


@dataclass
class Page:
    client: TestClient
    calls: FakeCalls
    clock: Clock
    cookie: Cookie
    app: Starlette

    def holding(self, value: str) -> TestClient:
        """Another browser, holding a copy of a cookie."""
        return TestClient(self.app, cookies={self.cookie.name: value})

    def state(self) -> State | None:
        return self.cookie.open(self.client.cookies.get(self.cookie.name))

    def csrf(self) -> str:
        state = self.state()
        assert state is not None
        return state.csrf

    def post(self, path: str, data: dict[str, str], **headers: str) -> object:
        return self.client.post(
            f"/me{path}",
            data={"csrf": self.csrf(), **data},
            headers={"origin": "http://testserver", **headers},
            follow_redirects=False,
        )

    def sign_in(self) -> None:
        self.client.get("/me/")
        assert self.post("/sign-in", {"phone": "150 0000 0001"}).status_code == 303  # type: ignore[attr-defined]
        done = self.post("/sign-in/code", {"code": self.calls.sms_code})
        assert done.status_code == 303, done.text  # type: ignore[attr-defined]


@pytest.fixture
def page() -> Page:
    clock = Clock()
    calls = FakeCalls(clock)
    cookie = Cookie(KEY, secure=False)
    app = build_me(
        calls, cookie, SignedOut(MemoryStorage()), unit="mall", max_body_bytes=4096, clock=clock
    )
    outer = Starlette(routes=[Mount("/me", app)])
    return Page(TestClient(outer), calls, clock, cookie, outer)


def test_the_cookie_is_sealed_and_opens_only_unaltered_under_its_own_name() -> None:
    cookie = Cookie(KEY, secure=True)
    state = State.fresh().signed_in("members/m1", FakeCalls(Clock()).tokens())
    sealed = cookie.seal(state)
    assert cookie.open(sealed) == state
    assert "access-" not in sealed and "members/m1" not in sealed
    altered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    assert cookie.open(altered) is None
    assert Cookie(KEY, secure=False).open(sealed) is None  # sealed for __Host-loyalty_me
    assert Cookie(bytes(32), secure=True).open(sealed) is None
    assert cookie.open("not a cookie") is None and cookie.open(None) is None
    assert cookie.name == "__Host-loyalty_me" and cookie.path == "/"


def test_signing_in_with_the_code_shows_the_page(page: Page) -> None:
    first = page.client.get("/me/")
    assert first.status_code == 200 and 'id="send-code"' in first.text
    set_cookie = first.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie
    assert "Path=/me" in set_cookie
    page.sign_in()
    assert page.calls.addresses == ["testclient"]  # the member's address, for identity's limits
    state = page.state()
    assert state is not None and state.member == "members/m1" and not state.challenge
    shown = page.client.get("/me/")
    assert shown.status_code == 200
    assert "<svg" in shown.text and "66 0123 4567 8901 2345" in shown.text
    assert 'hx-trigger="load delay:13s"' in shown.text  # asked again as the step passes
    assert "1234" in shown.text and "满100减10" in shown.text
    fragment = page.client.get("/me/code", headers={"hx-request": "true"})
    assert fragment.text.lstrip().startswith('<div id="member-code"')


def test_csrf_and_origin_are_required_on_every_post(page: Page) -> None:
    page.client.get("/me/")
    bare = page.client.post("/me/sign-in", data={"phone": "150"}, follow_redirects=False)
    assert bare.status_code == 403
    wrong = page.client.post(
        "/me/sign-in",
        data={"phone": "150", "csrf": "guess"},
        headers={"origin": "http://testserver"},
    )
    assert wrong.status_code == 403
    elsewhere = page.post("/sign-in", {"phone": "150"}, origin="https://evil.example")
    assert elsewhere.status_code == 403  # type: ignore[attr-defined]
    assert page.calls.addresses == []


def test_refusals_are_said_in_words(page: Page) -> None:
    page.client.get("/me/")
    page.calls.refuse_start = Refusal(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "SIGN_IN_RATE_LIMITED", {"limit": "phone"}, 45
    )
    limited = page.post("/sign-in", {"phone": "150 0000 0002"})
    assert limited.status_code == 429  # type: ignore[attr-defined]
    assert "获取验证码过于频繁，请 45 秒后再试" in limited.text  # type: ignore[attr-defined]
    page.calls.refuse_start = None
    page.post("/sign-in", {"phone": "150 0000 0002"})
    for left in (4, 3, 2, 1):
        wrong = page.post("/sign-in/code", {"code": "000000"})
        assert wrong.status_code == 401  # type: ignore[attr-defined]
        assert f"还可尝试 {left} 次" in wrong.text  # type: ignore[attr-defined]
    exhausted = page.post("/sign-in/code", {"code": "000000"})
    assert "错误次数过多" in exhausted.text  # type: ignore[attr-defined]
    assert 'id="send-code"' in exhausted.text  # type: ignore[attr-defined]
    state = page.state()
    assert state is not None and not state.challenge  # a new code is needed
    # The code ran out while waiting: asked anew.
    page.post("/sign-in", {"phone": "150 0000 0002"})
    page.clock.now += timedelta(minutes=6)
    assert "验证码已过期" in page.client.get("/me/").text


def test_the_access_token_is_refreshed_once_and_a_refused_refresh_signs_out(page: Page) -> None:
    page.sign_in()
    before = page.client.cookies.get(page.cookie.name)
    page.clock.now += timedelta(minutes=9, seconds=45)  # 15 s left: refreshed now
    assert page.client.get("/me/").status_code == 200
    assert len(page.calls.refreshes) == 1
    after = page.state()
    assert after is not None and after.tokens is not None
    assert after.tokens.access.startswith("access-2-")
    # A request still carrying the old cookie gets the same new tokens, not a second refresh
    # (which identity would take for a stolen token and end the session).
    copy = page.holding(before or "")
    assert copy.get("/me/code").status_code == 200
    assert len(page.calls.refreshes) == 1
    page.calls.refuse_refresh = True
    page.clock.now += timedelta(minutes=10)
    ended = page.client.get("/me/")
    assert 'id="send-code"' in ended.text
    state = page.state()
    assert state is not None and state.tokens is None


def test_a_service_away_is_said_and_a_refresh_made_meanwhile_is_kept(page: Page) -> None:
    page.sign_in()
    page.calls.refuse_overview = Refusal(grpc.StatusCode.UNAVAILABLE, "")
    page.clock.now += timedelta(minutes=10)
    away = page.client.get("/me/")
    assert away.status_code == 503 and "暂时无法访问" in away.text
    assert len(page.calls.refreshes) == 1
    kept = page.state()
    assert kept is not None and kept.tokens is not None
    assert kept.tokens.access.startswith("access-2-")  # the old refresh token is used up
    page.calls.refuse_overview = None
    page.clock.now += timedelta(minutes=5)  # past the refresh's minute of grace
    assert page.client.get("/me/").status_code == 200
    assert len(page.calls.refreshes) == 1


async def test_concurrent_requests_refresh_a_token_once() -> None:
    clock = Clock()
    calls = FakeCalls(clock)
    refresher = Refresher(calls.refresh, clock)
    tokens = calls.tokens()
    assert await refresher.current(tokens) == tokens  # good for a while: untouched
    clock.now += timedelta(minutes=10)
    got = await asyncio.gather(*(refresher.current(tokens) for _ in range(5)))
    assert len(calls.refreshes) == 1 and len({t.access for t in got}) == 1
    clock.now += timedelta(days=31)
    with pytest.raises(SessionEnded):
        await refresher.current(got[0])


def test_sign_out_ends_the_session_and_the_old_cookie_opens_nothing(page: Page) -> None:
    page.sign_in()
    old = page.client.cookies.get(page.cookie.name) or ""
    refresh = page.state().tokens.refresh  # type: ignore[union-attr]
    out = page.post("/sign-out", {})
    assert out.status_code == 303  # type: ignore[attr-defined]
    assert page.calls.signed_out == [refresh]
    assert 'id="send-code"' in page.client.get("/me/").text
    copy = page.holding(old)
    assert 'id="send-code"' in copy.get("/me/").text
    hx = copy.get("/me/code", headers={"hx-request": "true"})
    assert hx.status_code == 401 and hx.headers["hx-redirect"] == "/me/"


def test_consents_change_once_per_request_id(page: Page) -> None:
    page.sign_in()
    sms = "CONSENT_PURPOSE_MARKETING_SMS"
    form = {"purpose": sms, "granted": "true", "request_id": "r-1"}
    shown = page.post("/consents", form, **{"hx-request": "true"})
    assert shown.status_code == 200  # type: ignore[attr-defined]
    assert shown.text.lstrip().startswith('<section id="consents"')  # type: ignore[attr-defined]
    assert page.calls.consents == {member_pb2.CONSENT_PURPOSE_MARKETING_SMS: True}
    page.post("/consents", {**form, "granted": "false", "request_id": "r-2"})
    page.post("/consents", {**form, "granted": "true", "request_id": "r-2"})  # a retry of r-2
    assert page.calls.consents == {member_pb2.CONSENT_PURPOSE_MARKETING_SMS: False}
    bad = page.post("/consents", {**form, "purpose": "CONSENT_PURPOSE_UNSPECIFIED"})
    assert bad.status_code == 400  # type: ignore[attr-defined]


def test_the_codes_are_drawn_without_inline_style() -> None:
    qr = codes.qr_svg(CODE, "会员码 <b>")
    assert qr.startswith("<svg") and "style=" not in qr and "&lt;b&gt;" in qr
    bars = codes.barcode_svg(CODE, "bars")
    assert "style=" not in bars
    # The bars read back as python-barcode's Code 128 modules.
    (modules,) = barcode.get("code128", CODE).build()
    width = len(modules) + 2 * codes.QUIET
    drawn = ["0"] * width
    for x, run in re.findall(r"M(\d+) 0h(\d+)v", bars):
        for at in range(int(x), int(x) + int(run)):
            drawn[at] = "1"
    assert "".join(drawn)[codes.QUIET : codes.QUIET + len(modules)] == modules
    assert codes.grouped(CODE) == "66 0123 4567 8901 2345"
    with pytest.raises(ValueError):
        codes.qr_svg("66<script>", "x")


def test_every_language_has_the_same_strings() -> None:
    from loyalty_gateway.me import i18n

    keys = [set(i18n.catalogue(lang)) for lang in i18n.LANGS]
    assert keys[0] and all(k == keys[0] for k in keys)


def test_the_code_is_rotated_once_per_request_id_with_the_csrf_token(page: Page) -> None:
    page.sign_in()
    shown = page.client.get("/me/")
    request_id = re.search(r'name="request_id" value="([^"]+)"', shown.text)
    assert 'id="rotate-code"' in shown.text and request_id is not None
    forged = page.client.post(
        "/me/code/rotate",
        data={"request_id": request_id[1], "csrf": "guess"},
        headers={"origin": "http://testserver"},
    )
    assert forged.status_code == 403 and page.calls.rotations == set()
    for _ in range(2):  # the form sent twice: one rotation
        rotated = page.post("/code/rotate", {"request_id": request_id[1]})
        assert rotated.status_code == 303  # type: ignore[attr-defined]
    assert page.calls.rotations == {request_id[1]}
    again = page.client.get("/me/")
    assert request_id[1] not in again.text  # the next rotation is a new one
    assert page.post("/code/rotate", {}).status_code == 400  # type: ignore[attr-defined]


def test_lots_beyond_the_pages_twenty_are_a_link_away_a_page_at_a_time(page: Page) -> None:
    page.sign_in()
    page.calls.lot_points = [100]
    assert 'id="more-lots"' not in page.client.get("/me/").text
    page.calls.lot_points = list(range(1, 76))
    shown = page.client.get("/me/")
    assert shown.text.count("<tr><td>") == 20 and 'id="more-lots"' in shown.text
    first = page.client.get("/me/lots")
    assert first.status_code == 200 and first.text.count("<tr><td>") == 50
    link = re.search(r'id="next-lots" href="([^"]+)"', first.text)
    assert link is not None
    rest = page.client.get(link[1])
    assert rest.text.count("<tr><td>") == 25 and 'id="next-lots"' not in rest.text
    assert page.client.get("/me/lots", params={"page": "bad"}).status_code == 400
    assert page.client.get("/me/lots", params={"page": "9" * 600}).status_code == 400
