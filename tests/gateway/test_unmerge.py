"""A wrong merge undone over HTTP, end to end through the gateway and every service: the
restored member's balance, tier and coupons come back, the survivor keeps its own, the
settlement does not move, and the restored id earns and reads again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def until(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """The first truthy answer of `check` (services follow each other's events in moments)."""
    for _ in range(600):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def register(http: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    phone = {"type": "phone", "value": f"135{uuid.uuid4().int % 10**8:08d}"}
    response = await http.post(
        "/v1/members:register",
        json={"requestId": uuid.uuid4().hex, "unit": "mall", "identities": [phone]},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["member"]["name"]), phone


async def earn(http: httpx.AsyncClient, member: str, amount: str) -> httpx.Response:
    return await http.post(
        f"/v1/{member}/points:earn",
        json={
            "requestId": uuid.uuid4().hex,
            "unit": "mall",
            "orderId": f"U-{uuid.uuid4().hex[:10]}",
            "lines": [{"lineId": "1", "amount": {"currencyCode": "CNY", "amount": amount}}],
        },
    )


async def balance(http: httpx.AsyncClient, member: str) -> dict[str, Any] | None:
    response = await http.get(f"/v1/{member}/balance")
    if response.status_code != 200:
        return None
    found: dict[str, Any] = response.json()["balance"]
    found.pop("expiringSoonUntil", None)  # the time of asking
    return found


async def tier(http: httpx.AsyncClient, member: str) -> str:
    response = await http.get(f"/v1/{member}/tier")
    return str(response.json().get("tier", "")) if response.status_code == 200 else ""


async def coupons(http: httpx.AsyncClient, member: str) -> list[str] | None:
    response = await http.get(f"/v1/{member}/coupons")
    if response.status_code != 200:
        return None
    return sorted(c["code"] for c in response.json().get("coupons", []))


async def settlement(http: httpx.AsyncClient, start: str, end: str) -> dict[str, Any]:
    response = await http.get("/v1/settlement", params={"startTime": start, "endTime": end})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_wrong_merge_is_undone_over_http_and_every_service_follows(
    gateway: Gateway,
) -> None:
    start = (datetime.now(UTC) - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    end = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    async with (
        await gateway.session("mall", "earn", "redeem") as till,
        await gateway.session("group", "admin") as admin,
    ):
        survivor, _ = await register(till)
        restored, phone = await register(till)
        assert (await earn(till, survivor, "6000.00")).status_code == 200
        assert (await earn(till, restored, "25000.00")).status_code == 200
        await until(lambda: _is(tier(admin, survivor), "silver"), "the survivor is silver")
        await until(lambda: _is(tier(admin, restored), "gold"), "the other is gold")
        gift = await until(lambda: coupons(admin, restored), "gold's welcome gift")
        before: dict[str, dict[str, Any]] = {}
        for member in (survivor, restored):
            before[member] = await until(partial(balance, admin, member), "a balance")

        merged = await admin.post(
            f"/v1/{survivor}:merge",
            json={"absorbed": restored, "requestId": uuid.uuid4().hex, "reason": "same phone?"},
        )
        assert merged.status_code == 200, merged.text
        await until(lambda: _is(tier(admin, survivor), "gold"), "the survivor takes gold")
        refused = await till.get(f"/v1/{restored}/balance")
        assert refused.status_code == 400 and "MEMBER_MERGED" in refused.text
        # The survivor spends 1,000: its own points, the oldest.
        spent = await till.post(
            f"/v1/{survivor}/points:redeem",
            json={"requestId": uuid.uuid4().hex, "unit": "mall", "points": "1000"},
        )
        assert spent.status_code == 200, spent.text
        figures = await settlement(admin, start, end)

        undone = await admin.post(
            f"/v1/{survivor}:unmerge",
            json={
                "restored": restored,
                "requestId": uuid.uuid4().hex,
                "identities": [phone],
                "reason": "two people: mother and daughter share a phone",
            },
        )
        assert undone.status_code == 200, undone.text
        assert undone.json()["restored"]["state"] == "MEMBER_STATE_ACTIVE"

        back = await until(lambda: balance(admin, restored), "the restored balance")
        points = ("available", "pending", "lifetimeEarned", "expiringSoon")
        assert [back[k] for k in points] == [before[restored][k] for k in points]
        kept = await balance(admin, survivor)
        assert kept is not None
        assert int(kept["available"]) == int(before[survivor]["available"]) - 1000
        assert kept["lifetimeEarned"] == before[survivor]["lifetimeEarned"]
        await until(lambda: _is(tier(admin, restored), "gold"), "the restored member is gold")
        await until(lambda: _is(tier(admin, survivor), "silver"), "the survivor drops back")
        back_coupons = await until(lambda: coupons(admin, restored), "the coupons come back")
        assert set(gift) <= set(back_coupons)
        assert not set(gift) & set(await coupons(admin, survivor) or [])
        # A move between members: the settlement reads as it did before the unmerge.
        assert await settlement(admin, start, end) == figures

        # The restored id is a member again.
        again = await earn(till, restored, "100.00")
        assert again.status_code == 200, again.text


async def _is(answer: Awaitable[str], expected: str) -> bool:
    return await answer == expected
