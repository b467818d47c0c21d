"""Referral codes over HTTP through the gateway: a member's own token reads its code
(`GET /v1/members/{id}/referralCode`), a till records a newcomer referred with it, and the
member's token lists its referrals with masked IDs; another member's are MEMBER_MISMATCH."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.gateway.conftest import Gateway
from tests.gateway.test_coupon_offers_http import own_token
from tests.gateway.test_http import reason_of, register

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_member_shares_its_code_and_sees_whom_it_brought_over_http(
    gateway: Gateway,
) -> None:
    async with await gateway.session("mall", "earn") as till:
        member, newcomer = await register(till), await register(till)
        async with httpx.AsyncClient(
            base_url=gateway.url, timeout=15, headers=own_token(member)
        ) as phone:
            shown = await phone.get(f"/v1/{member}/referralCode")
            assert shown.status_code == 200, shown.text
            code = shown.json()["referralCode"]["code"]
            assert (await phone.get(f"/v1/{member}/referralCode")).json()["referralCode"][
                "code"
            ] == code

            recorded = await till.post(
                f"/v1/{newcomer}/referral",
                json={"requestId": uuid.uuid4().hex, "referralCode": code.lower()},
            )
            assert recorded.status_code == 200, recorded.text
            assert recorded.json()["referrerMemberId"] == member.removeprefix("members/")

            listed = await phone.get(f"/v1/{member}/referrals")
            assert listed.status_code == 200, listed.text
            (referral,) = listed.json()["referrals"]
            assert referral["referredMember"].endswith(newcomer[-4:])
            assert newcomer.removeprefix("members/") not in listed.text
            foreign = await phone.get(f"/v1/{newcomer}/referrals")
            assert (foreign.status_code, reason_of(foreign)) == (403, "MEMBER_MISMATCH")
