"""Who may call what, over HTTP: unit x scope x endpoint.

For each endpoint, the API client of the unit the request acts for and holding the scope it
needs gets through (whatever the business answer), the same client without that scope is
refused 403 SCOPE_REQUIRED, a client of another unit holding the scope is refused 403
UNIT_MISMATCH, an admin gets through for any unit, and a call without a token is 401. The
services enforce all of it (the gateway only passes the token on), so the same matrix holds
for backend teams calling them over gRPC.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.gateway.conftest import Gateway
from tests.gateway.test_composite import phone
from tests.gateway.test_http import reason_of

pytestmark = pytest.mark.asyncio(loop_scope="session")
Body = Callable[["Member"], dict[str, Any]]


@dataclass
class Member:
    name: str
    phone: str


@dataclass
class Endpoint:
    name: str
    method: str
    path: str  # {member} is replaced
    body: Body | None
    unit: str | None  # the unit the request acts for (None: any unit's client)
    scope: str | None  # the scope it needs beyond a token (None: any client)


def rid() -> dict[str, str]:
    return {"requestId": uuid.uuid4().hex}


def lines() -> list[dict[str, Any]]:
    return [{"lineId": "1", "amount": {"currencyCode": "CNY", "amount": "10.00"}}]


def order() -> str:
    return f"o-{uuid.uuid4().hex[:8]}"


ENDPOINTS = [
    Endpoint(
        "earn",
        "POST",
        "/v1/{member}/points:earn",
        lambda m: {**rid(), "unit": "hotel", "orderId": order(), "lines": lines()},
        "hotel",
        "earn",
    ),
    Endpoint(
        "redeem",
        "POST",
        "/v1/{member}/points:redeem",
        lambda m: {**rid(), "unit": "cinema", "points": "1"},
        "cinema",
        "redeem",
    ),
    Endpoint(
        "reverse earn",
        "POST",
        "/v1/{member}/points:reverseEarn",
        lambda m: {**rid(), "unit": "hotel", "orderId": order()},
        "hotel",
        "earn",
    ),
    Endpoint(
        "confirm order",
        "POST",
        "/v1/{member}/points:confirmOrder",
        lambda m: {**rid(), "unit": "hotel", "orderId": order()},
        "hotel",
        "earn",
    ),
    Endpoint(
        "adjust",
        "POST",
        "/v1/{member}/points:adjust",
        lambda m: {**rid(), "unit": "mall", "points": "5", "reason": "goodwill"},
        "mall",
        "points:adjust",
    ),
    Endpoint("settlement", "GET", "/v1/settlement", None, None, "admin"),
    Endpoint(
        "transfer",
        "POST",
        "/v1/{member}/points:transfer",
        lambda m: {**rid(), "toMember": m.name, "points": "1"},
        None,
        "redeem",
    ),
    Endpoint(
        "consume benefit",
        "POST",
        "/v1/{member}/benefits:consume",
        lambda m: {**rid(), "benefit": "test-hotel-welcome-drink", "unit": "hotel"},
        "hotel",
        None,
    ),
    Endpoint(
        "issue coupons",
        "POST",
        "/v1/couponTemplates/test-mall-15:issue",
        lambda m: {**rid(), "members": [m.name]},
        "mall",
        "coupons:issue",
    ),
    Endpoint(
        "suspend member",
        "POST",
        "/v1/{member}:suspend",
        lambda m: {**rid(), "reason": "matrix"},
        None,
        "members:manage",
    ),
    Endpoint(
        "record purchase",
        "POST",
        "/v1/purchases:record",
        lambda m: {
            **rid(),
            "identity": {"type": "phone", "value": m.phone},
            "unit": "hotel",
            "orderId": order(),
            "lines": lines(),
        },
        "hotel",
        "earn",
    ),
    Endpoint(
        "redeem at checkout",
        "POST",
        "/v1/checkouts:redeem",
        lambda m: {
            **rid(),
            "identity": {"type": "phone", "value": m.phone},
            "unit": "cinema",
            "orderId": order(),
            "points": "1",
        },
        "cinema",
        "redeem",
    ),
    Endpoint(
        "refund purchase",
        "POST",
        "/v1/purchases:refund",
        lambda m: {
            **rid(),
            "identity": {"type": "phone", "value": m.phone},
            "unit": "hotel",
            "orderId": order(),
        },
        "hotel",
        "earn",
    ),
]
OTHER_UNIT = {"hotel": "mall", "mall": "cinema", "cinema": "hotel"}


@pytest_asyncio.fixture(loop_scope="session")
async def member(gateway: Gateway) -> AsyncIterator[Member]:
    number = phone()
    async with await gateway.session("mall", "earn") as pos:
        made = await pos.post(
            "/v1/members:register",
            json={**rid(), "unit": "mall", "identities": [{"type": "phone", "value": number}]},
        )
        assert made.status_code == 200, made.text
        yield Member(made.json()["member"]["name"], number)


_tokens: dict[tuple[str, ...], str] = {}


async def session(gateway: Gateway, unit: str, *scopes: str) -> httpx.AsyncClient:
    """An HTTP client of an API client of `unit` with `scopes` (one API client per kind: the
    matrix asks the same kinds again and again)."""
    key = (unit, *sorted(scopes))
    if key not in _tokens:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as plain:
            _tokens[key] = await gateway.token(plain, *(await gateway.client(unit, *scopes)))
    return httpx.AsyncClient(
        base_url=gateway.url, timeout=15, headers={"Authorization": f"Bearer {_tokens[key]}"}
    )


async def call(http: httpx.AsyncClient, endpoint: Endpoint, member: Member) -> httpx.Response:
    path = endpoint.path.replace("{member}", member.name)
    if endpoint.method == "GET":
        return await http.get(path)
    assert endpoint.body is not None
    return await http.post(path, json=endpoint.body(member))


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
async def test_the_authorisation_matrix(
    gateway: Gateway, member: Member, endpoint: Endpoint
) -> None:
    unit = endpoint.unit or "mall"
    scopes = [endpoint.scope] if endpoint.scope else []
    decoy = "profile:read"  # a scope that grants none of these

    async with await session(gateway, unit, *scopes, decoy) as allowed:
        answer = await call(allowed, endpoint, member)
        assert answer.status_code not in (401, 403), answer.text
        assert answer.status_code < 500, answer.text
    if endpoint.scope:
        async with await session(gateway, unit, decoy) as unscoped:
            answer = await call(unscoped, endpoint, member)
            assert answer.status_code == 403, answer.text
            assert reason_of(answer) == "SCOPE_REQUIRED"
    if endpoint.unit:
        async with await session(gateway, OTHER_UNIT[unit], *scopes, decoy) as foreign:
            answer = await call(foreign, endpoint, member)
            assert answer.status_code == 403, answer.text
            assert reason_of(answer) == "UNIT_MISMATCH"
    async with await session(gateway, "group", "admin") as admin:
        answer = await call(admin, endpoint, member)
        assert answer.status_code not in (401, 403), answer.text
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as anonymous:
        answer = await call(anonymous, endpoint, member)
        assert answer.status_code == 401 and reason_of(answer) == "TOKEN_MISSING"
