"""Real traffic through the gateway (purchases, a refund, a checkout with points, a coupon and a
benefit, a reward bought with points), then the checker over the services' databases; and
tampering with one row at a time, directly in a database, undone afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest_asyncio
from loyalty_check.checker import Options, check
from loyalty_check.findings import Report
from loyalty_kit.db import asyncpg_params
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings

from tests.gateway.conftest import (
    Gateway,
    catalogue,
    gateway,
    points,
    programme,
    tiers,
)
from tests.gateway.test_checkout import checkout, coupon_for, member_with
from tests.gateway.test_composite import phone, purchase

__all__ = ["catalogue", "gateway", "points", "programme", "tiers"]

DRINK = "test-hotel-welcome-drink"


@dataclass
class Traffic:
    """Members the traffic made, by what they did (member ids)."""

    shopper: str  # bought at the mall, refunded one order
    payer: str  # paid a hotel checkout with points, a coupon and a benefit
    reward_buyer: str  # bought a cinema ticket with points
    refund_order: str  # the shopper's refunded order (mall)

    @property
    def members(self) -> tuple[str, ...]:
        """The members the checks look at: earlier tests of the session may leave data of
        their own members that the checker rightly reports (events published by hand)."""
        return (self.shopper, self.payer, self.reward_buyer)


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def check_settings(settings: Settings, points_service: RunningService) -> Settings:
    """The services' own settings, as an operator's environment would give them."""
    return settings.model_copy(update={"points_target": points_service.target})


_made: list[Traffic] = []


@pytest_asyncio.fixture(loop_scope="session")
async def traffic(gateway: Gateway, check_settings: Settings) -> Traffic:
    """The traffic, made once per session (the gateway fixture is per test)."""
    if not _made:
        _made.append(await _run_traffic(gateway, check_settings))
    return _made[0]


async def _run_traffic(gateway: Gateway, check_settings: Settings) -> Traffic:
    number = phone()
    shopper, _ = await member_with(gateway, number, "mall", "388.00")
    async with await gateway.session("mall", "earn", "redeem") as mall:
        sale = purchase(number, "mall", "120.00")
        assert (await mall.post("/v1/purchases:record", json=sale)).status_code == 200
        refund = {
            "identity": {"type": "phone", "value": number},
            "unit": "mall",
            "orderId": sale["orderId"],
            "reason": "returned",
            "requestId": uuid.uuid4().hex,
        }
        refunded = await mall.post("/v1/purchases:refund", json=refund)
        assert refunded.status_code == 200, refunded.text
        stay = purchase(number, "hotel", "900.00")  # pending for the hotel's window
    async with await gateway.session("hotel", "earn", "redeem") as hotel:
        assert (await hotel.post("/v1/purchases:record", json=stay)).status_code == 200

    number = phone()
    payer, _ = await member_with(gateway, number, "mall", "800.00")
    code = await coupon_for(gateway, payer)
    async with await gateway.session("mall", "earn", "redeem") as mall:
        amount = {"currencyCode": "CNY", "amount": "300.00"}
        pay = checkout(number, "mall", points="300", coupon=code, orderAmount=amount)
        paid = await mall.post("/v1/checkouts:redeem", json=pay)
        assert paid.status_code == 200, paid.text
    async with await gateway.session("hotel", "earn", "redeem") as hotel:
        drink = await hotel.post(
            "/v1/checkouts:redeem", json=checkout(number, "hotel", points="100", benefit=DRINK)
        )
        assert drink.status_code == 200, drink.text

    number = phone()
    buyer, _ = await member_with(gateway, number, "mall", "6000.00")
    async with await gateway.session("cinema", "redeem") as app:
        bought = await app.post(
            f"/v1/{buyer}/rewards:redeem",
            json={"reward": "cinema-ticket", "requestId": uuid.uuid4().hex},
        )
        assert bought.status_code == 200, bought.text
    made = Traffic(
        shopper=shopper.removeprefix("members/"),
        payer=payer.removeprefix("members/"),
        reward_buyer=buyer.removeprefix("members/"),
        refund_order=str(sale["orderId"]),
    )
    await settled(check_settings, made.members)
    return made


async def settled(settings: Settings, members: tuple[str, ...], seconds: float = 30.0) -> Report:
    """The checker's report on `members` once events in flight have landed (tiers has consumed
    them and the outboxes are published), or the last report after `seconds`."""
    options = Options(members=members)
    report = await check(settings, options)
    for _ in range(int(seconds / 0.2)):
        if report.clean:
            break
        await asyncio.sleep(0.2)
        report = await check(settings, options)
    return report


async def only(settings: Settings, members: tuple[str, ...], *rules: str, **options: Any) -> Report:
    """The report of `rules` on `members` (and what is no member's)."""
    return await check(settings, Options(only=rules, members=members, **options))


@contextlib.asynccontextmanager
async def database(settings: Settings, service: str) -> AsyncIterator[asyncpg.Connection]:
    """A writing connection to a service's database: the tests' hand in the data."""
    params = asyncpg_params(settings.server_url.set(database=settings.database_for(service)))
    conn = await asyncpg.connect(**params)
    try:
        yield conn
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def tampered(
    settings: Settings, service: str, change: str, undo: str, *args: Any
) -> AsyncIterator[list[asyncpg.Record]]:
    """Apply `change` (its RETURNING rows are yielded), and `undo` afterwards, both with `args`:
    the session's later tests see the data as the services left it."""
    async with database(settings, service) as conn:
        rows = await conn.fetch(change, *args)
        assert rows, f"nothing to tamper with: {change}"
        try:
            yield rows
        finally:
            await conn.execute(undo, *args)
