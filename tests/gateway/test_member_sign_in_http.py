"""Members signing in over HTTP, as the member app's backend calls the gateway: WeChat sign-in
(the development fake), the member's own token, refresh rotation and sign-out everywhere, with
the refusals as JSON (AIP-193) and their HTTP codes."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.gateway.conftest import Gateway


def reason(response: httpx.Response) -> str:
    details: list[dict[str, Any]] = response.json()["error"]["details"]
    return next(str(d["reason"]) for d in details if "reason" in d)


async def wechat(app: httpx.AsyncClient) -> dict[str, Any]:
    response = await app.post(
        "/v1/memberSignIn:weChat", json={"code": f"dev-o{uuid.uuid4().hex}", "unit": "mall"}
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_a_member_signs_in_with_wechat_refreshes_and_signs_out_everywhere(
    gateway: Gateway,
) -> None:
    app = await gateway.session("mall", "members:sign_in")
    async with app:
        signed = await wechat(app)
        assert signed["registered"] is True
        member = signed["member"]["name"]
        tokens = signed["tokens"]
        refreshed = await app.post(
            "/v1/memberSignIn:refresh", json={"refreshToken": tokens["refreshToken"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        rotated = refreshed.json()["tokens"]
        assert rotated["session"] == tokens["session"]
        reused = await app.post(
            "/v1/memberSignIn:refresh", json={"refreshToken": tokens["refreshToken"]}
        )
        assert (reused.status_code, reason(reused)) == (401, "REFRESH_TOKEN_REUSED")

        again = await wechat(app)
        own = {"Authorization": f"Bearer {again['tokens']['accessToken']}"}
        async with httpx.AsyncClient(base_url=gateway.url, timeout=15, headers=own) as as_member:
            other = await as_member.post(f"/v1/{member}:signOutEverywhere", json={})
            assert (other.status_code, reason(other)) == (403, "MEMBER_MISMATCH")
            ended = await as_member.post(
                f"/v1/{again['member']['name']}:signOutEverywhere", json={}
            )
            assert ended.status_code == 200, ended.text
            assert ended.json()["sessionsEnded"] == 1
            # A member's token signs nobody in (no rule names a member there).
            start = await as_member.post(
                "/v1/memberSignIn:weChat", json={"code": "dev-oSomeoneElse12345", "unit": "mall"}
            )
            assert (start.status_code, reason(start)) == (403, "MEMBER_TOKEN_REFUSED")
        gone = await app.post(
            "/v1/memberSignIn:refresh", json={"refreshToken": again["tokens"]["refreshToken"]}
        )
        assert (gone.status_code, reason(gone)) == (401, "REFRESH_TOKEN_REVOKED")
        bad = await app.post("/v1/memberSignIn:weChat", json={"code": "", "unit": "mall"})
        assert bad.status_code == 400
        assert [v["field"] for v in bad.json()["error"]["details"][1]["fieldViolations"]] == [
            "code"
        ]
