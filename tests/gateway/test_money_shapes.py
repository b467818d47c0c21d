"""Every amount of money a member's answers carry has one shape: exactly its currency's minor
digits (CNY "20000.00", JPY "100"), whatever shape it was given in or computed with. Walked over
HTTP through the gateway, through the worked example's member (docs/worked-example.md)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from loyalty_kit.money import minor_units

from tests.gateway.conftest import Gateway
from tests.gateway.test_composite import eventually, phone, purchase

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Tier metrics counted in the ladder's base currency (the Huayue ladder's: CNY).
MONEY_METRICS = {"METRIC_QUALIFYING_SPEND", "METRIC_GROWTH_VALUE"}


def amounts(answer: Any, base: str = "CNY") -> list[tuple[str, str]]:
    """Every money string of a JSON answer with its currency: each Money, and the thresholds
    and progress of the tier metrics that are amounts of the base currency."""
    found: list[tuple[str, str]] = []
    if isinstance(answer, dict):
        if "currencyCode" in answer and "amount" in answer:
            found.append((answer["currencyCode"], answer["amount"]))
        elif answer.get("metric") in MONEY_METRICS:
            keys = ("value", "current", "required", "remaining")
            found.extend((base, answer[key]) for key in keys if key in answer)
        for value in answer.values():
            found.extend(amounts(value, base))
    elif isinstance(answer, list):
        for value in answer:
            found.extend(amounts(value, base))
    return found


def misshapen(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    def shaped(currency: str, amount: str) -> bool:
        digits = minor_units(currency)
        fraction = rf"\.\d{{{digits}}}" if digits else ""
        return re.fullmatch(rf"-?\d+{fraction}", amount) is not None

    return [(currency, amount) for currency, amount in found if not shaped(currency, amount)]


async def test_every_amount_in_a_member_s_answers_has_its_currency_s_minor_digits(
    gateway: Gateway,
) -> None:
    number = phone()
    start = datetime.now(UTC) - timedelta(minutes=1)
    mall = await gateway.session("mall", "earn", "redeem")
    hotel = await gateway.session("hotel", "earn")
    cinema = await gateway.session("cinema", "redeem")
    finance = await gateway.session("group", "admin")
    answers: dict[str, Any] = {}
    async with mall, hotel, cinema, finance:

        async def ok(name: str, call: Any) -> dict[str, Any]:
            response = await call
            assert response.status_code == 200, (name, response.text)
            body: dict[str, Any] = response.json()
            answers[name] = body
            return body

        registered = await ok(
            "register",
            mall.post(
                "/v1/members:register",
                json={
                    "requestId": uuid.uuid4().hex,
                    "unit": "mall",
                    "channel": "CHANNEL_POS",
                    "identities": [{"type": "phone", "value": number}],
                },
            ),
        )
        member = registered["member"]["name"]
        # Amounts given without their fen, and one in HKD: the answers carry them in shape.
        await ok(
            "mall purchase",
            mall.post("/v1/purchases:record", json=purchase(number, "mall", "6000")),
        )
        in_hkd = purchase(number, "mall", "100")
        in_hkd["lines"][0]["amount"]["currencyCode"] = "HKD"
        await ok("purchase in HKD", mall.post("/v1/purchases:record", json=in_hkd))
        stay = await ok(
            "hotel purchase",
            hotel.post("/v1/purchases:record", json=purchase(number, "hotel", "20000")),
        )
        assert stay["tier"] == "gold"

        async def with_welcome_coupon() -> dict[str, Any] | None:
            page = (await mall.get(f"/v1/{member}/overview")).json()
            codes = {c["templateCode"] for c in page["coupons"]}
            return page if {"welcome-silver", "welcome-gold"} <= codes else None

        answers["overview"] = overview = await eventually(with_welcome_coupon)
        coupon = next(c for c in overview["coupons"] if c["templateCode"] == "welcome-gold")

        async def every_purchase_counted() -> dict[str, Any] | None:
            tier = (await mall.get(f"/v1/{member}/tier")).json()
            return tier if tier["progress"][0]["current"] == "26092.00" else None

        answers["tier"] = await eventually(every_purchase_counted)
        await ok("ladder", mall.get("/v1/ladder"))
        await ok("catalogue", mall.get("/v1/benefitCatalogue"))
        await ok("coupons", mall.get(f"/v1/{member}/coupons"))
        await ok(
            "reward",
            cinema.post(
                f"/v1/{member}/rewards:redeem",
                json={"requestId": uuid.uuid4().hex, "reward": "cinema-ticket"},
            ),
        )
        await ok(
            "checkout",
            mall.post(
                "/v1/checkouts:redeem",
                json={
                    "identity": {"type": "phone", "value": number},
                    "unit": "mall",
                    "orderId": f"mall-{uuid.uuid4().hex[:8]}",
                    "orderAmount": {"currencyCode": "CNY", "amount": "300"},
                    "coupon": coupon["code"],
                    "points": "333",
                    "requestId": uuid.uuid4().hex,
                },
            ),
        )
        end = datetime.now(UTC) + timedelta(minutes=1)
        await ok(
            "settlement",
            finance.get(
                "/v1/settlement",
                params={
                    "startTime": start.isoformat().replace("+00:00", "Z"),
                    "endTime": end.isoformat().replace("+00:00", "Z"),
                },
            ),
        )

    found = {name: amounts(body) for name, body in answers.items() if name != "register"}
    assert all(found.values()), [name for name, items in found.items() if not items]
    assert {name: misshapen(items) for name, items in found.items()} == {name: [] for name in found}
    # The spots that had a second shape: the tier's progress, the coupon's terms.
    progress = answers["tier"]["progress"][0]
    assert (progress["required"], progress["remaining"]) == ("80000.00", "53908.00")
    assert (coupon["amount"]["amount"], coupon["minimumSpend"]["amount"]) == ("50.00", "200.00")
    assert answers["checkout"]["couponDiscount"]["amount"] == "50.00"
    assert answers["checkout"]["pointsValue"]["amount"] == "3.33"
    breakdown = answers["purchase in HKD"]["posting"]["breakdown"]
    assert breakdown["qualifyingSpend"] == {"currencyCode": "HKD", "amount": "100.00"}
    assert breakdown["qualifyingSpendBase"] == {"currencyCode": "CNY", "amount": "92.00"}
