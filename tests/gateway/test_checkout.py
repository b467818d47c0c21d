"""Paying at a checkout with points, a coupon and a benefit (all or nothing) and refunding the
order, over HTTP against the real services."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import httpx
import pytest
from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty_kit.caller import Caller, set_current_caller
from loyalty_kit.db import driver_connection
from loyalty_kit.server import RunningService

from tests.gateway.conftest import Gateway
from tests.gateway.test_composite import phone, purchase
from tests.gateway.test_http import fields_of, reason_of

pytestmark = pytest.mark.asyncio(loop_scope="session")
DRINK = "test-hotel-welcome-drink"  # every member, twice a calendar year, at the hotel


async def member_with(
    gateway: Gateway, number: str, unit: str, amount: str
) -> tuple[str, dict[str, Any]]:
    """A member registered by phone who bought for `amount` at `unit`."""
    async with await gateway.session(unit, "earn") as pos:
        registered = await pos.post(
            "/v1/members:register",
            json={
                "requestId": uuid.uuid4().hex,
                "unit": unit,
                "identities": [{"type": "phone", "value": number}],
            },
        )
        assert registered.status_code == 200, registered.text  # (register is not a Create)
        sale = purchase(number, unit, amount)
        bought = await pos.post("/v1/purchases:record", json=sale)
        assert bought.status_code == 200, bought.text
    return registered.json()["member"]["name"], sale


def checkout(number: str, unit: str, **parts: Any) -> dict[str, Any]:
    return {
        "identity": {"type": "phone", "value": number},
        "unit": unit,
        "orderId": f"{unit}-pay-{uuid.uuid4().hex[:8]}",
        "requestId": uuid.uuid4().hex,
        **parts,
    }


async def remaining(http: httpx.AsyncClient, member: str, unit: str, code: str) -> int:
    page = (await http.get(f"/v1/{member}/entitlements", params={"unit": unit})).json()
    found = next(e for e in page["entitlements"] if e["benefit"]["code"] == code)
    return int(found["remaining"])


async def coupon_for(gateway: Gateway, member: str, template: str = "test-mall-15") -> str:
    async with await gateway.session("mall", "coupons:issue") as marketing:
        issued = await marketing.post(
            f"/v1/couponTemplates/{template}:issue",
            json={"requestId": uuid.uuid4().hex, "members": [member]},
        )
        assert issued.status_code == 200, issued.text
    return str(issued.json()["coupons"][0]["code"])


async def test_points_and_a_benefit_in_one_call_taken_once(gateway: Gateway) -> None:
    number = phone()
    member, _ = await member_with(gateway, number, "mall", "800.00")  # 800 points, available
    async with await gateway.session("hotel", "earn", "redeem") as hotel:
        before = await remaining(hotel, member, "hotel", DRINK)
        pay = checkout(number, "hotel", points="300", benefit=DRINK)
        answers = await asyncio.gather(
            *(hotel.post("/v1/checkouts:redeem", json=pay) for _ in range(3))
        )
        done = [a for a in answers if a.status_code == 200]
        assert done, [a.text for a in answers]
        # Concurrent duplicates either wait their turn (409 ABORTED, retry) or get the answer.
        assert all(
            a.status_code == 409 and reason_of(a) == "CHECKOUT_IN_PROGRESS"
            for a in answers
            if a.status_code != 200
        )
        body = done[0].json()
        assert body["member"] == member
        assert body["pointsPosting"]["points"] == "-300"
        assert body["pointsValue"] == {"currencyCode": "CNY", "amount": "3.00"}
        assert body["consumption"]["benefitCode"] == DRINK
        assert body["balance"]["available"] == "500"
        again = await hotel.post("/v1/checkouts:redeem", json=pay)
        assert again.status_code == 200 and again.json() == body
        assert await remaining(hotel, member, "hotel", DRINK) == before - 1
        balance = (await hotel.get(f"/v1/{member}/balance")).json()["balance"]
        assert balance["available"] == "500"


async def test_a_refused_part_gives_back_the_parts_already_taken(gateway: Gateway) -> None:
    number = phone()
    member, _ = await member_with(gateway, number, "mall", "200.00")
    code = await coupon_for(gateway, member)
    async with await gateway.session("mall", "earn", "redeem") as mall:
        # The coupon is taken, then the points are refused: the coupon comes back.
        greedy = checkout(
            number,
            "mall",
            points="5000",
            coupon=code,
            orderAmount={"currencyCode": "CNY", "amount": "150.00"},
        )
        refused = await mall.post("/v1/checkouts:redeem", json=greedy)
        assert refused.status_code in (400, 409), refused.text
        assert reason_of(refused) == "INSUFFICIENT_POINTS"
        coupon = (await mall.get(f"/v1/{member}/coupons/{code}")).json()["coupon"]
        assert coupon["state"] == "COUPON_STATE_ISSUED"
        assert (await mall.get(f"/v1/{member}/balance")).json()["balance"]["available"] == "200"
        # The same request_id tries again (the refusal is not kept): still refused, nothing lost.
        retried = await mall.post("/v1/checkouts:redeem", json=greedy)
        assert reason_of(retried) == "INSUFFICIENT_POINTS"
        # Within the balance, the same coupon pays: 15% of 150 and 100 points.
        fair = {**greedy, "points": "100", "requestId": uuid.uuid4().hex}
        paid = await mall.post("/v1/checkouts:redeem", json=fair)
        assert paid.status_code == 200, paid.text
        assert paid.json()["couponDiscount"] == {"currencyCode": "CNY", "amount": "22.50"}
        assert paid.json()["balance"]["available"] == "100"


async def test_a_unit_pays_only_at_itself_and_bad_checkouts_name_their_fields(
    gateway: Gateway,
) -> None:
    number = phone()
    await member_with(gateway, number, "mall", "100.00")
    async with await gateway.session("cinema", "redeem") as cinema:
        foreign = await cinema.post(
            "/v1/checkouts:redeem", json=checkout(number, "hotel", points="10")
        )
        assert foreign.status_code == 403 and reason_of(foreign) == "UNIT_MISMATCH"
        empty = await cinema.post(
            "/v1/checkouts:redeem",
            json={"unit": "cinema", "requestId": "r 1", "coupon": "a/b"},
        )
        assert empty.status_code == 400
        assert set(fields_of(empty)) == {
            "identity",
            "order_id",
            "order_amount",
            "coupon",
            "request_id",
        }


async def test_a_refund_takes_back_earned_points_and_gives_back_what_paid(
    gateway: Gateway,
) -> None:
    number = phone()
    member, _ = await member_with(gateway, number, "mall", "500.00")
    code = await coupon_for(gateway, member)
    async with await gateway.session("mall", "earn", "redeem") as mall:
        order = f"mall-{uuid.uuid4().hex[:8]}"
        amount = {"currencyCode": "CNY", "amount": "300.00"}
        paid = await mall.post(
            "/v1/checkouts:redeem",
            json={
                **checkout(number, "mall", points="200", coupon=code, orderAmount=amount),
                "orderId": order,
            },
        )
        assert paid.status_code == 200, paid.text
        sale = {**purchase(number, "mall", "255.00"), "orderId": order}  # what was paid in cash
        earned = await mall.post("/v1/purchases:record", json=sale)
        assert earned.json()["balance"]["available"] == "555"  # 500 - 200 + 255
        refund = {
            "identity": {"type": "phone", "value": number},
            "unit": "mall",
            "orderId": order,
            "reason": "returned",
            "requestId": uuid.uuid4().hex,
        }
        refunded = await mall.post("/v1/purchases:refund", json=refund)
        assert refunded.status_code == 200, refunded.text
        body = refunded.json()
        assert body["reversal"]["points"] == "-255"
        assert body["pointsReturned"]["points"] == "200"
        assert body["coupon"]["state"] == "COUPON_STATE_ISSUED"
        assert body["balance"]["available"] == "500"
        assert (await mall.post("/v1/purchases:refund", json=refund)).json() == body
        # Another refund of the same order gives nothing back twice.
        twice = await mall.post(
            "/v1/purchases:refund", json={**refund, "requestId": uuid.uuid4().hex}
        )
        assert twice.status_code == 400 and reason_of(twice) == "ALREADY_REVERSED"
        balance = (await mall.get(f"/v1/{member}/balance")).json()["balance"]
        assert balance["available"] == "500"


async def test_a_checkout_cut_short_is_given_back_by_the_gateway(
    gateway: Gateway, gateway_service: RunningService
) -> None:
    """A gateway that stopped between taking the points and answering: its log row stays
    running; recovery (on any replica) gives the points and the benefit back."""
    number = phone()
    member, _ = await member_with(gateway, number, "mall", "400.00")
    client_id, secret = await gateway.client("hotel", "earn", "redeem")
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as plain:
        token = await gateway.token(plain, client_id, secret)
    hotel = httpx.AsyncClient(
        base_url=gateway.url, timeout=15, headers={"Authorization": f"Bearer {token}"}
    )
    before = await remaining(hotel, member, "hotel", DRINK)
    checkouts = gateway_service.root.flows.checkout
    request = pb.RedeemAtCheckoutRequest(
        unit="hotel", order_id="cut-short", points=150, benefit=DRINK, request_id=uuid.uuid4().hex
    )
    request.identity.type, request.identity.value = "phone", number
    set_current_caller(Caller(unit="hotel", client_id=client_id, scopes=frozenset({"redeem"})))
    md = checkouts.credentials.metadata(
        Caller(unit="hotel", client_id=client_id, scopes=frozenset({"redeem"}))
    )
    row, _ = await checkouts.begin(request, "hotel", member.split("/")[1])
    for step in ("benefit", "points"):  # taken; then the gateway "stops"
        await checkouts.step(row, step, md)
    async with contextlib.aclosing(hotel) as again:
        assert await remaining(again, member, "hotel", DRINK) == before - 1
        assert (await again.get(f"/v1/{member}/balance")).json()["balance"]["available"] == "250"
        async with gateway_service.context.uow() as uow:  # as if its lease had run out
            conn = await driver_connection(uow.session)
            await conn.execute(
                "UPDATE checkouts SET updated_at = now() - interval '5 minutes' "
                "WHERE checkout_id = $1",
                uuid.UUID(row.checkout_id),
            )
            await uow.commit()
        await checkouts.recover()  # (or the recovery job, which may come first)
        for _ in range(300):
            async with gateway_service.context.uow() as uow:
                conn = await driver_connection(uow.session)
                state = await conn.fetchval(
                    "SELECT state FROM checkouts WHERE checkout_id = $1",
                    uuid.UUID(row.checkout_id),
                )
            if state == "open":
                break
            await asyncio.sleep(0.1)
        assert state == "open"
        assert await remaining(again, member, "hotel", DRINK) == before
        assert (await again.get(f"/v1/{member}/balance")).json()["balance"]["available"] == "400"
