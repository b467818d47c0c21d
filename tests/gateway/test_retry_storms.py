"""Retry storms through the gateway over HTTP: the same request (the same request_id) sent 20
times at once, as a till or an app that retries on every timeout would. Every answer agrees
with the first, or is a clear retryable refusal where that is the contract, and the ledger and
the coupons show one effect.

What a concurrent duplicate gets: a purchase, a points redemption and a coupon redemption wait
for the first (the idempotency key is claimed in the first's transaction) and answer with its
answer; a reward redemption carries on the one redemption of its request_id, so every answer
names the same redemption and coupon; a checkout answers 409 ABORTED CHECKOUT_IN_PROGRESS while
the first attempt runs (retry: the same request then gets the first answer)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import Gateway
from tests.gateway.test_checkout import DRINK, checkout, coupon_for, member_with, remaining
from tests.gateway.test_composite import phone, purchase
from tests.gateway.test_http import reason_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

STORM = 20


async def storm(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[httpx.Response]:
    return await asyncio.gather(*(http.post(path, json=body) for _ in range(STORM)))


def agree(answers: list[httpx.Response]) -> dict[str, Any]:
    """Every answer is 200 with the same body; that body."""
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    first: dict[str, Any] = answers[0].json()
    assert all(a.json() == first for a in answers)
    return first


async def postings(http: httpx.AsyncClient, member: str) -> list[tuple[str, str]]:
    page = (await http.get(f"/v1/{member}/postings")).json()
    return sorted((p["kind"], p["points"]) for p in page.get("postings", []))


async def test_a_purchase_sent_20_times_at_once_is_credited_once(gateway: Gateway) -> None:
    number = phone()
    member, _ = await member_with(gateway, number, "mall", "10.00")
    async with await gateway.session("mall", "earn") as pos:
        body = agree(await storm(pos, "/v1/purchases:record", purchase(number, "mall", "88.00")))
        assert body["posting"]["points"] == "88"
        assert await postings(pos, member) == [
            ("POSTING_KIND_EARN", "10"),
            ("POSTING_KIND_EARN", "88"),
        ]
        balance = (await pos.get(f"/v1/{member}/balance")).json()["balance"]
        assert (balance["available"], balance["lifetimeEarned"]) == ("98", "98")


async def test_a_redemption_sent_20_times_at_once_is_debited_once(gateway: Gateway) -> None:
    number = phone()
    member, _ = await member_with(gateway, number, "mall", "500.00")
    async with await gateway.session("cinema", "redeem") as till:
        body = agree(
            await storm(
                till,
                f"/v1/{member}/points:redeem",
                {"requestId": uuid.uuid4().hex, "unit": "cinema", "points": "120"},
            )
        )
        assert (body["posting"]["points"], body["balance"]["available"]) == ("-120", "380")
        assert await postings(till, member) == [
            ("POSTING_KIND_EARN", "500"),
            ("POSTING_KIND_REDEEM", "-120"),
        ]


async def test_a_checkout_sent_20_times_at_once_takes_each_part_once(gateway: Gateway) -> None:
    number = phone()
    member, _ = await member_with(gateway, number, "mall", "800.00")
    async with await gateway.session("hotel", "earn", "redeem") as hotel:
        before = await remaining(hotel, member, "hotel", DRINK)
        pay = checkout(number, "hotel", points="300", benefit=DRINK)
        answers = await storm(hotel, "/v1/checkouts:redeem", pay)
        done = [a for a in answers if a.status_code == 200]
        assert done, [a.text for a in answers]
        assert all(
            a.status_code == 409 and reason_of(a) == "CHECKOUT_IN_PROGRESS"
            for a in answers
            if a.status_code != 200
        ), [a.text for a in answers]
        first = agree(done)
        again = await hotel.post("/v1/checkouts:redeem", json=pay)  # a refused one retries
        assert again.status_code == 200 and again.json() == first
        assert await remaining(hotel, member, "hotel", DRINK) == before - 1
        assert await postings(hotel, member) == [
            ("POSTING_KIND_EARN", "800"),
            ("POSTING_KIND_REDEEM", "-300"),
        ]


async def test_a_reward_redemption_sent_20_times_at_once_is_paid_and_issued_once(
    gateway: Gateway,
) -> None:
    number = phone()
    member, _ = await member_with(gateway, number, "mall", "6000.00")
    async with await gateway.session("group", "redeem") as app:
        answers = await storm(
            app,
            f"/v1/{member}/rewards:redeem",
            {"requestId": uuid.uuid4().hex, "reward": "cinema-ticket"},
        )
        assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
        # The stock left is read at each answer; the redemption and its coupon are one.
        assert len({(a.json()["redemptionId"], a.json()["coupon"]["code"]) for a in answers}) == 1
        assert await postings(app, member) == [
            ("POSTING_KIND_EARN", "6000"),
            ("POSTING_KIND_REDEEM", "-5000"),
        ]
        coupons = (await app.get(f"/v1/{member}/coupons")).json()["coupons"]
        assert [c["templateCode"] for c in coupons].count("cinema-ticket") == 1


async def test_a_coupon_redemption_sent_20_times_at_once_redeems_it_once(
    gateway: Gateway,
) -> None:
    number = phone()
    member, _ = await member_with(gateway, number, "mall", "10.00")
    code = await coupon_for(gateway, member)  # 15% off at the mall from CNY 100
    async with await gateway.session("mall", "earn") as pos:
        body = agree(
            await storm(
                pos,
                f"/v1/{member}/coupons/{code}:redeem",
                {
                    "requestId": uuid.uuid4().hex,
                    "unit": "mall",
                    "orderId": f"mall-{uuid.uuid4().hex[:8]}",
                    "orderAmount": {"currencyCode": "CNY", "amount": "200.00"},
                },
            )
        )
        assert body["discount"] == {"currencyCode": "CNY", "amount": "30.00"}
        coupon = (await pos.get(f"/v1/{member}/coupons/{code}")).json()["coupon"]
        assert coupon["state"] == "COUPON_STATE_REDEEMED"
        other = await pos.post(
            f"/v1/{member}/coupons/{code}:redeem",
            json={
                "requestId": uuid.uuid4().hex,
                "unit": "mall",
                "orderId": f"mall-{uuid.uuid4().hex[:8]}",
                "orderAmount": {"currencyCode": "CNY", "amount": "200.00"},
            },
        )
        assert other.status_code != 200  # used once: another order is refused
