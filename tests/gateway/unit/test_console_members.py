"""The console's member pages without a server (Starlette's TestClient, fake member flows): a
part unavailable shown as such, names escaped, the out-of-reach refusal showing nothing of the
member, showing personal data only by a POST with the CSRF token (recorded, asked for with
personal_data:read), and an action only after its confirmation and with a reason."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from loyalty.audit.v1.audit_pb2 import AuditEntryRecorded
from loyalty.identity.v1 import member_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty_gateway.console.app import build_console
from loyalty_gateway.flows.member360 import OUT_OF_REACH, MemberSummary, View360, masked
from loyalty_gateway.settings import GatewaySettings
from loyalty_kit import scopes
from loyalty_kit.caller import Caller
from loyalty_kit.errors import FieldViolation, InvalidArgument, PermissionDenied
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from tests.gateway.unit.test_console_auth import BASE, NOW, SAME, MemoryAccounts, signed_in

XSS = "<script>alert(1)</script>"
MEMBER_ID = str(uuid.uuid4())
OTHER_ID = str(uuid.uuid4())


def member() -> member_pb2.Member:
    return member_pb2.Member(
        name=f"members/{MEMBER_ID}",
        member_id=MEMBER_ID,
        state=member_pb2.MEMBER_STATE_ACTIVE,
        registered_unit="hotel",
        identities=[member_pb2.Identity(type="phone", value="13912345678")],
        profile=member_pb2.Profile(full_name=XSS),
    )


@dataclass
class FakeReads:
    callers: list[Caller] = field(default_factory=list)

    async def find_members(self, _md: Any, query: str) -> list[MemberSummary]:
        if query == "??":
            raise InvalidArgument.of([FieldViolation("query", "not a phone")])
        return [
            MemberSummary(f"members/{MEMBER_ID}", MEMBER_ID, 1, "hotel", (("phone", "*5678"),), "<")
        ]

    async def member_360(self, _md: Any, caller: Caller, name: str, _token: str = "") -> View360:
        self.callers.append(caller)
        if name.endswith(OTHER_ID):
            raise PermissionDenied("not yours", reason=OUT_OF_REACH)
        found = member() if caller.may(scopes.PERSONAL_DATA_READ) else masked(member())
        page = points_pb.ListPostingsResponse()
        page.postings.add(kind=points_pb.POSTING_KIND_ADJUST, points=30, unit="hotel", reason=XSS)
        return View360(
            member=found,
            parts={
                "profile": found,
                "identities": list(found.identities),
                "consents": [],
                "balance": points_pb.GetBalanceResponse(),
                "statement": page,
            },
            unavailable=["coupons", "entitlements"],
        )


@dataclass
class FakeActions:
    reads: FakeReads = field(default_factory=FakeReads)
    done: list[tuple[str, int, str]] = field(default_factory=list)

    async def adjust_points(
        self,
        _md: Any,
        _caller: Caller,
        name: str,
        *,
        unit: str,
        points: int,
        request_id: str,
        reason: str,
    ) -> None:
        self.done.append((name, points, reason))


def client(
    actions: FakeActions,
    role: str = "group_admin",
    unit: str = "group",
    written: list[AuditEntryRecorded] | None = None,
) -> tuple[TestClient, str]:
    accounts = MemoryAccounts()
    login = f"op-{uuid.uuid4().hex[:8]}"
    accounts.add(login, role, unit)
    config = GatewaySettings(console_insecure_cookies=True)

    async def write(entry: AuditEntryRecorded) -> None:
        if written is not None:
            written.append(entry)

    console = build_console(accounts, config, clock=lambda: NOW, members=actions, audit_write=write)
    http = TestClient(Starlette(routes=[Mount("/console", console)]), base_url=BASE)
    return http, signed_in(http, login)


def test_a_part_unavailable_is_said_and_names_are_escaped() -> None:
    http, _ = client(FakeActions(), "customer_service")
    page = http.get(f"/console/members/{MEMBER_ID}")
    assert page.status_code == 200
    assert page.text.count("暂时无法获取") == 2  # coupons, entitlements
    assert 'id="part-coupons"' in page.text
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "13912345678" not in page.text  # masked for customer service until shown


def test_out_of_reach_is_a_403_naming_the_reason_and_nothing_else() -> None:
    http, _ = client(FakeActions(), "unit_manager", "cinema")
    page = http.get(f"/console/members/{OTHER_ID}")
    assert page.status_code == 403
    main = page.text.split("<main", 1)[1]
    assert OUT_OF_REACH in main and OTHER_ID not in main


def test_a_query_naming_nothing_is_a_form_error() -> None:
    http, _ = client(FakeActions(), "customer_service")
    page = http.get("/console/members", params={"q": "??"})
    assert page.status_code == 400 and 'id="member-query-error"' in page.text
    hits = http.get("/console/members", params={"q": "13912345678"})
    assert hits.status_code == 200 and f'href="/console/members/{MEMBER_ID}"' in hits.text


def test_showing_personal_data_is_a_recorded_post() -> None:
    actions = FakeActions()
    written: list[AuditEntryRecorded] = []
    http, csrf = client(actions, "customer_service", written=written)
    refused = http.post(f"/console/members/{MEMBER_ID}/unmask", headers=SAME)
    assert refused.status_code == 403
    assert [e.method for e in written] == ["SignIn"]
    shown = http.post(f"/console/members/{MEMBER_ID}/unmask", data={"csrf": csrf}, headers=SAME)
    assert shown.status_code == 200 and "13912345678" in shown.text
    assert actions.reads.callers[-1].may(scopes.PERSONAL_DATA_READ)
    event = written[-1]
    assert (event.service, event.method, event.target) == ("console", "ShowPersonalData", MEMBER_ID)
    assert event.operator_id == written[0].operator_id != ""
    assert json.loads(event.request_json) == {
        "member_id": MEMBER_ID,
        "shown": ["profile", "identities"],
    }
    assert "13912345678" not in str(event) and "alert" not in str(event)
    # An analyst may not.
    analyst, token = client(FakeActions(), "analyst")
    denied = analyst.post(
        f"/console/members/{MEMBER_ID}/unmask", data={"csrf": token}, headers=SAME
    )
    assert denied.status_code == 403


def test_an_action_needs_its_confirmation_and_a_reason() -> None:
    actions = FakeActions()
    http, csrf = client(actions)
    url = f"/console/members/{MEMBER_ID}/act/adjust"
    fields = {"csrf": csrf, "points": "30", "unit": "hotel", "request_id": "console.x"}
    review = http.post(url, data={**fields, "reason": "补偿"}, headers=SAME)
    assert review.status_code == 200 and 'id="confirm"' in review.text and actions.done == []
    blank = http.post(url, data={**fields, "reason": "  ", "confirmed": "yes"}, headers=SAME)
    assert blank.status_code == 400 and actions.done == []
    done = http.post(
        url,
        data={**fields, "reason": "补偿", "confirmed": "yes"},
        headers=SAME,
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"].endswith("?done=adjust#actions")
    assert actions.done == [(f"members/{MEMBER_ID}", 30, "补偿")]
    # A role without the action is refused it.
    analyst, token = client(FakeActions(), "customer_service")
    assert (
        analyst.post(
            f"/console/members/{MEMBER_ID}/act/erase",
            data={"csrf": token, "reason": "x"},
            headers=SAME,
        ).status_code
        == 403
    )
