"""The reads the console's member 360 and jobs page make, over HTTP through the gateway: a
member's lots, a member's segments, the bulk coupon issuances."""

from __future__ import annotations

import uuid

import pytest

from tests.gateway.conftest import Gateway
from tests.gateway.test_http import fields_of, register

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_members_lots_segments_and_the_issuances_over_http(gateway: Gateway) -> None:
    async with await gateway.session("hotel", "earn") as http:
        member = await register(http, "hotel")
        earned = await http.post(
            f"/v1/{member}/points:earn",
            json={
                "requestId": uuid.uuid4().hex,
                "unit": "hotel",
                "orderId": f"H-{uuid.uuid4().hex[:8]}",
                "lines": [{"lineId": "1", "amount": {"currencyCode": "CNY", "amount": "100.00"}}],
            },
        )
        assert earned.status_code == 200, earned.text
        lots = await http.get(f"/v1/{member}/lots", params={"pageSize": 1, "unit": "hotel"})
        assert lots.status_code == 200, lots.text
        (lot,) = lots.json()["lots"]
        assert (lot["unit"], lot["state"]) == ("hotel", "LOT_STATE_PENDING")
        assert lot["points"] == lot["remainingPoints"] == "200"
        assert lot["name"] == f"{member}/lots/{lot['lotId']}"
        assert lots.json()["nextPageToken"] == ""
        none_yet = await http.get(
            f"/v1/{member}/lots", params={"expireBefore": "2000-01-01T00:00:00Z"}
        )
        assert none_yet.status_code == 200 and none_yet.json()["lots"] == []
        bad = await http.get(f"/v1/{member}/lots", params={"pageToken": "not-a-token"})
        assert bad.status_code == 400 and fields_of(bad) == ["page_token"]

    async with await gateway.session("group", "insights:group") as http:
        segments = await http.get(f"/v1/{member}/segments", params={"pageSize": 10})
        assert segments.status_code == 200, segments.text
        assert segments.json()["segments"] == []  # no figures of the new member yet

    async with await gateway.session("group", "admin") as http:
        listed = await http.get(
            "/v1/couponIssuances",
            params={"pageSize": 5, "state": "COUPON_ISSUANCE_STATE_SUCCEEDED"},
        )
        assert listed.status_code == 200, listed.text
        assert len(listed.json()["couponIssuances"]) <= 5
        bad = await http.get("/v1/couponIssuances", params={"pageSize": -1})
        assert bad.status_code == 400 and fields_of(bad) == ["page_size"]
