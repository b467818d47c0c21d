"""The composite flows over HTTP, through the worked example (docs/worked-example.md), against
the real identity, points, tiers and benefits services."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from loyalty_devstack.embedded import free_port
from loyalty_devstack.testing import ServiceRunner
from loyalty_gateway.app import SPEC as GATEWAY
from loyalty_kit.server import RunningService

from tests.gateway.conftest import Gateway
from tests.gateway.test_http import fields_of, reason_of

pytestmark = pytest.mark.asyncio(loop_scope="session")


def phone() -> str:
    return f"135{uuid.uuid4().int % 10**8:08d}"


def purchase(number: str, unit: str, amount: str, **extra: Any) -> dict[str, Any]:
    return {
        "identity": {"type": "phone", "value": number},
        "unit": unit,
        "orderId": f"{unit}-{uuid.uuid4().hex[:8]}",
        "channel": "CHANNEL_POS",
        "lines": [{"lineId": "1", "amount": {"currencyCode": "CNY", "amount": amount}}],
        "requestId": uuid.uuid4().hex,
        **extra,
    }


async def eventually(check: Callable[[], Awaitable[Any]]) -> Any:
    """`check()` once it returns something true (events take a moment)."""
    for _ in range(200):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("never happened")


async def test_the_worked_example_register_earn_upgrade_use_redeem_refund(
    gateway: Gateway,
) -> None:
    number = phone()
    mall = await gateway.session("mall", "earn", "redeem")
    hotel = await gateway.session("hotel", "earn", "redeem")
    cinema = await gateway.session("cinema", "earn", "redeem")
    app = await gateway.session("hotel", "profile:read")
    async with mall, hotel, cinema, app:
        # Registered at the mall's POS by phone.
        registered = await mall.post(
            "/v1/members:register",
            json={
                "requestId": uuid.uuid4().hex,
                "unit": "mall",
                "channel": "CHANNEL_POS",
                "identities": [{"type": "phone", "value": number}],
            },
        )
        member = registered.json()["member"]["name"]

        # A mall purchase (points available at once), then a hotel stay that reaches gold.
        shopping = await mall.post("/v1/purchases:record", json=purchase(number, "mall", "600.00"))
        assert shopping.status_code == 200, shopping.text
        assert shopping.json()["posting"]["points"] == "600"
        stay = await hotel.post("/v1/purchases:record", json=purchase(number, "hotel", "20000.00"))
        body = stay.json()
        assert stay.status_code == 200, stay.text
        assert body["member"] == member
        assert body["posting"]["points"] == "40000"  # 20,000 x hotel 2
        assert body["posting"]["breakdown"]["exactPoints"] == "40000"
        assert body["balance"] == {**body["balance"], "available": "600", "pending": "40000"}
        assert (body["tier"], body["upgraded"]) == ("gold", True)
        assert body["unavailable"] == []

        # The app's "my membership" page at the hotel: gold, late checkouts, masked profile.
        async def gold_overview() -> dict[str, Any] | None:
            page = (await app.get(f"/v1/{member}/overview")).json()
            codes = {e["benefit"]["code"]: e for e in page["entitlements"]}
            return page if "hotel-late-checkout" in codes else None

        overview = await eventually(gold_overview)
        assert overview["tier"]["tier"] == "gold"
        assert overview["tier"]["nextTier"] == "platinum"
        assert overview["balance"]["pending"] == "40000"
        late = next(
            e for e in overview["entitlements"] if e["benefit"]["code"] == "hotel-late-checkout"
        )
        assert (late["quota"], late["remaining"]) == (2, 2)
        assert overview["member"]["identities"][0]["value"] != number  # masked
        assert overview["unavailable"] == []

        # A late checkout at the hotel, paid at its checkout.
        used = await hotel.post(
            "/v1/checkouts:redeem",
            json={
                "identity": {"type": "phone", "value": number},
                "unit": "hotel",
                "orderId": stay_order(stay),
                "benefit": "hotel-late-checkout",
                "requestId": uuid.uuid4().hex,
            },
        )
        assert used.status_code == 200, used.text
        assert used.json()["consumption"]["benefitCode"] == "hotel-late-checkout"
        # The mall cannot use the hotel's benefit.
        foreign = await mall.post(
            f"/v1/{member}/benefits:consume",
            json={"requestId": uuid.uuid4().hex, "benefit": "hotel-late-checkout", "unit": "hotel"},
        )
        assert foreign.status_code == 403 and reason_of(foreign) == "UNIT_MISMATCH"

        # Points earned at the mall spent at the cinema's checkout: 500 points, CNY 5.
        redeemed = await cinema.post(
            "/v1/checkouts:redeem",
            json={
                "identity": {"type": "phone", "value": number},
                "unit": "cinema",
                "orderId": f"cinema-{uuid.uuid4().hex[:8]}",
                "points": "500",
                "requestId": uuid.uuid4().hex,
            },
        )
        assert redeemed.status_code == 200, redeemed.text
        assert redeemed.json()["pointsValue"] == {"currencyCode": "CNY", "amount": "5.00"}
        assert redeemed.json()["balance"]["available"] == "100"

        # The hotel stay refunded: its points go, the late checkout comes back, the tier
        # stays until the tier year decides.
        refund = await hotel.post(
            "/v1/purchases:refund",
            json={
                "identity": {"type": "phone", "value": number},
                "unit": "hotel",
                "orderId": stay_order(stay),
                "reason": "stay cancelled",
                "requestId": uuid.uuid4().hex,
            },
        )
        assert refund.status_code == 200, refund.text
        assert refund.json()["reversal"]["points"] == "-40000"
        assert refund.json()["consumption"]["releaseTime"]
        after = (await app.get(f"/v1/{member}/overview")).json()
        assert after["balance"]["pending"] == "0"
        assert after["tier"]["tier"] == "gold"
        late = next(
            e for e in after["entitlements"] if e["benefit"]["code"] == "hotel-late-checkout"
        )
        assert late["remaining"] == 2


def stay_order(response: httpx.Response) -> str:
    return str(response.json()["posting"]["orderId"])


async def test_the_tier_in_a_purchase_answer_is_the_one_the_tiers_service_will_hold(
    gateway: Gateway,
) -> None:
    """Judged as the tiers service judges the points event: the spend in the base currency
    (HKD 5,400 is CNY 4,968, short of silver's 5,000) at the time it happened (two years ago is
    outside the 12-month window)."""
    async with await gateway.session("mall", "earn") as pos:
        in_hkd = purchase(phone(), "mall", "5400.00")
        in_hkd["lines"][0]["amount"]["currencyCode"] = "HKD"
        two_years_ago = f"{datetime.now(UTC).year - 2}-06-01T10:00:00Z"
        long_ago = purchase(phone(), "mall", "6000.00", occurTime=two_years_ago)
        for sale in (in_hkd, long_ago):
            await pos.post(
                "/v1/members:register",
                json={
                    "requestId": uuid.uuid4().hex,
                    "unit": "mall",
                    "identities": [sale["identity"]],
                },
            )
            answer = await pos.post("/v1/purchases:record", json=sale)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert (body["tier"], body["upgraded"]) == ("basic", False), sale
            spend = body["posting"]["breakdown"]["qualifyingSpendBase"]
            assert spend["currencyCode"] == "CNY"
            overview = (await pos.get(f"/v1/{body['member']}/overview")).json()
            assert overview["tier"]["tier"] == "basic"


async def test_a_pos_retrying_a_purchase_is_credited_once(gateway: Gateway) -> None:
    number = phone()
    async with await gateway.session("mall", "earn") as pos:
        await pos.post(
            "/v1/members:register",
            json={
                "requestId": uuid.uuid4().hex,
                "unit": "mall",
                "identities": [{"type": "phone", "value": number}],
            },
        )
        sale = purchase(number, "mall", "88.00")
        answers = await asyncio.gather(
            *(pos.post("/v1/purchases:record", json=sale) for _ in range(5))
        )
        assert {a.status_code for a in answers} == {200}
        first = answers[0].json()
        assert all(a.json() == first for a in answers)
        again = await pos.post("/v1/purchases:record", json=sale)
        assert again.json() == first
        member = first["member"]
        balance = (await pos.get(f"/v1/{member}/balance")).json()["balance"]
        assert (balance["available"], balance["lifetimeEarned"]) == ("88", "88")

        other_unit = await pos.post("/v1/purchases:record", json=purchase(number, "hotel", "10.00"))
        assert other_unit.status_code == 403 and reason_of(other_unit) == "UNIT_MISMATCH"
        bad = await pos.post(
            "/v1/purchases:record",
            json={"unit": "mall", "requestId": "r-1", "identity": {"type": "phone"}},
        )
        assert bad.status_code == 400
        assert sorted(fields_of(bad)) == ["identity", "lines", "order_id"]
        stranger = await pos.post("/v1/purchases:record", json=purchase(phone(), "mall", "1.00"))
        assert stranger.status_code == 404


async def test_the_overview_answers_with_a_service_down(
    gateway: Gateway, gateway_service: RunningService
) -> None:
    """A gateway whose benefits service is unreachable still shows the rest."""
    settings = gateway_service.context.settings.model_copy(
        update={"benefits_target": "127.0.0.1:9", "gateway_http_port": free_port()}
    )
    runner = ServiceRunner(settings)
    degraded = await runner.start(GATEWAY, settings)
    url = f"http://127.0.0.1:{settings.gateway_http_port}"
    try:
        async with await gateway.session("mall", "earn") as pos:
            number = phone()
            made = await pos.post(
                "/v1/members:register",
                json={
                    "requestId": uuid.uuid4().hex,
                    "unit": "mall",
                    "identities": [{"type": "phone", "value": number}],
                },
            )
            member = made.json()["member"]["name"]
            token = pos.headers["Authorization"]
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": token}) as http:
            page = await eventually(lambda: _overview(http, member))
        assert page.status_code == 200, page.text
        body = page.json()
        assert sorted(body["unavailable"]) == ["coupons", "entitlements"]
        assert body["member"]["name"] == member and body["balance"]["available"] == "0"
        assert degraded.context.settings.benefits_target == "127.0.0.1:9"
    finally:
        await runner.stop_all()


async def _overview(http: httpx.AsyncClient, member: str) -> httpx.Response | None:
    try:
        return await http.get(f"/v1/{member}/overview")
    except httpx.TransportError:
        return None  # its HTTP server is still starting
