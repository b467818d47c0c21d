"""The member code (会员码) over HTTP through the gateway: the member app's backend shows a
member their code, a till resolves it once with `GET /v1/members:resolve`, a second scan and a
malformed code are refused with the service's reason, and a member's own token reaches its own
code only."""

from __future__ import annotations

import httpx
import pytest
from loyalty_devstack.testing import metadata_for
from loyalty_kit.caller import Caller

from tests.gateway.conftest import Gateway
from tests.gateway.test_http import fields_of, reason_of, register

pytestmark = pytest.mark.asyncio(loop_scope="session")


def scan(code: str) -> dict[str, str]:
    return {"identity.type": "member_code", "identity.value": code}


async def test_a_member_code_is_shown_and_resolved_once_over_http(gateway: Gateway) -> None:
    async with (
        await gateway.session("mall", "earn") as till,
        await gateway.session("group", "member_codes:read") as app,
    ):
        member = await register(till)
        shown = await app.get(f"/v1/{member}/memberCode")
        assert shown.status_code == 200, shown.text
        code = shown.json()["memberCode"]
        assert code["member"] == member and code["qrPayload"] == code["code"]
        assert len(code["code"]) == 18 and code["code"].startswith("66")
        assert code["validFrom"] < code["refreshAfter"] < code["validUntil"]

        resolved = await till.get("/v1/members:resolve", params=scan(code["code"]))
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["member"]["name"] == member
        again = await till.get("/v1/members:resolve", params=scan(code["code"]))
        assert (again.status_code, reason_of(again)) == (400, "MEMBER_CODE_USED")
        bad = await till.get("/v1/members:resolve", params=scan("66123"))
        assert (bad.status_code, reason_of(bad)) == (400, "MEMBER_CODE_MALFORMED")
        assert fields_of(bad) == ["identity.value"]
        unknown = await till.get("/v1/members:resolve", params=scan("66" + "0" * 16))
        assert (unknown.status_code, reason_of(unknown)) == (404, "MEMBER_CODE_UNKNOWN")


async def test_a_member_token_rotates_its_own_code_over_http(gateway: Gateway) -> None:
    async with await gateway.session("mall", "earn") as till:
        member, other = await register(till), await register(till)
    member_id = member.removeprefix("members/")
    own = Caller(
        client_id=f"member:{member_id}",
        scopes=frozenset({"self:read", "self:write"}),
        member=member_id,
    )
    headers = dict(metadata_for(own))
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15, headers=headers) as phone:
        before = (await phone.get(f"/v1/{member}/memberCode")).json()["memberCode"]["code"]
        rotated = await phone.post(
            f"/v1/{member}/memberCode:rotate",
            json={"requestId": member_id, "reason": "code seen by someone else"},
        )
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["memberCode"]["code"][2:12] != before[2:12]
        foreign = await phone.get(f"/v1/{other}/memberCode")
        assert (foreign.status_code, reason_of(foreign)) == (403, "MEMBER_MISMATCH")
