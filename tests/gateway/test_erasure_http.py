"""A member asking to be erased, over HTTP through the gateway (identity's own routes): the
request with the member's own token opened and its code sent, another member's request
refused, a bad code a field violation, the sweep an administrator's; and, once an operator
erases the member, the member's token refused by identity (401)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from loyalty_devstack.testing import metadata_for
from loyalty_kit.caller import Caller

from tests.gateway.conftest import Gateway
from tests.gateway.test_http import fields_of, reason_of

pytestmark = pytest.mark.asyncio(loop_scope="session")


def new_phone() -> str:
    return f"15{'01235689'[uuid.uuid4().int % 8]}{uuid.uuid4().int % 10**8:08d}"


def own_token(member: str) -> dict[str, str]:
    member_id = member.removeprefix("members/")
    caller = Caller(
        client_id=f"member:{member_id}",
        scopes=frozenset({"self:read", "self:write"}),
        member=member_id,
    )
    return dict(metadata_for(caller))


async def test_a_members_erasure_request_over_http(
    gateway: Gateway,
) -> None:
    phone = new_phone()
    async with (
        await gateway.session("mall", "earn") as till,
        await gateway.session("group", "admin") as admin,
    ):
        registered = await till.post(
            "/v1/members:register",
            json={
                "requestId": uuid.uuid4().hex,
                "unit": "mall",
                "channel": "CHANNEL_POS",
                "identities": [{"type": "phone", "value": phone}],
            },
        )
        assert registered.status_code == 200, registered.text
        member = registered.json()["member"]["name"]
        other = (
            await till.post(
                "/v1/members:register",
                json={
                    "requestId": uuid.uuid4().hex,
                    "unit": "mall",
                    "identities": [{"type": "phone", "value": new_phone()}],
                },
            )
        ).json()["member"]["name"]
        async with httpx.AsyncClient(
            base_url=gateway.url, timeout=15, headers=own_token(member)
        ) as app:
            # Nothing asked yet; then the request opens and its code is sent through this run's
            # engagement (tests/identity/test_erasure.py walks the whole path; a replica whose
            # engagement does not answer keeps nothing, tests/identity/test_sign_in.py).
            none = await app.get(f"/v1/{member}/erasureRequest")
            assert (none.status_code, reason_of(none)) == (404, "ERASURE_REQUEST_NOT_FOUND")
            opened = await app.post(f"/v1/{member}/erasureRequest", json={"requestId": "e1"})
            assert opened.status_code == 200, opened.text
            request = opened.json()["erasureRequest"]
            assert request["state"] == "ERASURE_STATE_REQUESTED"
            seen = await app.get(f"/v1/{member}/erasureRequest")
            assert seen.status_code == 200, seen.text
            assert seen.json()["erasureRequest"]["name"] == request["name"]
            sent = await admin.get("/v1/transactionalMessages", params={"phone": f"+86{phone}"})
            assert sent.status_code == 200, sent.text
            assert [m["kind"] for m in sent.json()["messages"]] == ["erasure_code"]

            foreign = await app.get(f"/v1/{other}/erasureRequest")
            assert (foreign.status_code, reason_of(foreign)) == (403, "MEMBER_MISMATCH")
            bad = await app.post(
                f"/v1/{member}/erasureRequest:confirm", json={"code": "12ab", "requestId": "c0"}
            )
            assert (bad.status_code, fields_of(bad)) == (400, ["code"])
            sweep = await app.post("/v1/erasureRequests:runDue", json={})
            assert (sweep.status_code, reason_of(sweep)) == (403, "MEMBER_TOKEN_REFUSED")
            swept = await admin.post("/v1/erasureRequests:runDue", json={})
            assert swept.status_code == 200, swept.text
            assert member not in swept.json().get("erasedMembers", [])

            # An operator erases the member at once: identity refuses the member's token.
            async with await gateway.session("group", "members:manage") as desk:
                erased = await desk.post(
                    f"/v1/{member}:erase", json={"requestId": uuid.uuid4().hex}
                )
                assert erased.status_code == 200, erased.text
            refused = await app.get(f"/v1/{member}/erasureRequest")
            assert (refused.status_code, reason_of(refused)) == (401, "MEMBER_ERASED")
