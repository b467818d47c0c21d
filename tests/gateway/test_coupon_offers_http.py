"""Coupon offers over HTTP through the gateway: the group's marketing publishes an offer, a
member's own token lists it and claims one coupon for itself (`POST
/v1/couponOffers/{id}:claim`), finds it among its coupons, and is refused another member's
claim (MEMBER_MISMATCH) and a second coupon over the limit (OFFER_LIMIT_REACHED)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from loyalty_devstack.testing import metadata_for
from loyalty_kit.caller import Caller

from tests.gateway.conftest import Gateway
from tests.gateway.test_http import reason_of, register

pytestmark = pytest.mark.asyncio(loop_scope="session")


def own_token(member: str) -> dict[str, str]:
    member_id = member.removeprefix("members/")
    caller = Caller(
        client_id=f"member:{member_id}",
        scopes=frozenset({"self:read", "self:redeem"}),
        member=member_id,
    )
    return dict(metadata_for(caller))


async def test_a_member_claims_an_offer_with_its_own_token_over_http(gateway: Gateway) -> None:
    start = datetime.now(UTC) - timedelta(minutes=1)
    async with (
        await gateway.session("mall", "earn") as till,
        await gateway.session("group", "coupons:issue") as marketing,
    ):
        member, other = await register(till), await register(till)
        published = await marketing.post(
            "/v1/couponOffers",
            json={
                "template": "birthday-gift",
                "available": 10,
                "claimStartTime": start.isoformat(),
                "claimEndTime": (start + timedelta(days=3)).isoformat(),
            },
            params={"requestId": uuid.uuid4().hex},
        )
        assert published.status_code == 201, published.text
        offer = published.json()["couponOffer"]
        assert (offer["state"], offer["remaining"], offer["perMemberLimit"]) == (
            "COUPON_OFFER_STATE_OPEN",
            "10",
            1,
        )

    async with httpx.AsyncClient(
        base_url=gateway.url, timeout=15, headers=own_token(member)
    ) as phone:
        listed = await phone.get("/v1/couponOffers", params={"member": member, "pageSize": 200})
        assert listed.status_code == 200, listed.text
        assert offer["name"] in [o["name"] for o in listed.json()["couponOffers"]]

        claimed = await phone.post(
            f"/v1/{offer['name']}:claim", json={"member": member, "requestId": uuid.uuid4().hex}
        )
        assert claimed.status_code == 200, claimed.text
        coupon = claimed.json()["coupon"]
        assert coupon["templateCode"] == "birthday-gift"
        assert claimed.json()["couponOffer"]["memberClaimed"] == 1
        mine = await phone.get(f"/v1/{member}/coupons")
        assert mine.status_code == 200, mine.text
        assert [c["code"] for c in mine.json()["coupons"]] == [coupon["code"]]

        again = await phone.post(
            f"/v1/{offer['name']}:claim", json={"member": member, "requestId": uuid.uuid4().hex}
        )
        assert (again.status_code, reason_of(again)) == (400, "OFFER_LIMIT_REACHED")
        foreign = await phone.post(
            f"/v1/{offer['name']}:claim", json={"member": other, "requestId": uuid.uuid4().hex}
        )
        assert (foreign.status_code, reason_of(foreign)) == (403, "MEMBER_MISMATCH")
