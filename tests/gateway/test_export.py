"""A member's data export through the gateway: identity's part, points, tier and benefits in
one answer, against the real services."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from loyalty_devstack.embedded import free_port
from loyalty_devstack.testing import ServiceRunner
from loyalty_gateway.app import SPEC as GATEWAY
from loyalty_gateway.flows.export import every_page
from loyalty_kit.server import RunningService

from tests.gateway.conftest import Gateway
from tests.gateway.test_checkout import coupon_for
from tests.gateway.test_composite import eventually, phone, purchase
from tests.gateway.test_http import reason_of

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def silver_member(gateway: Gateway, number: str) -> str:
    """A member registered at the mall by `number` who spent CNY 6,000 there (silver)."""
    async with await gateway.session("mall", "earn") as till:
        made = await till.post(
            "/v1/members:register",
            json={
                "requestId": uuid.uuid4().hex,
                "unit": "mall",
                "identities": [{"type": "phone", "value": number}],
            },
        )
        member = str(made.json()["member"]["name"])
        bought = await till.post("/v1/purchases:record", json=purchase(number, "mall", "6000.00"))
        assert bought.status_code == 200, bought.text

        async def silver() -> bool:
            tier = (await till.get(f"/v1/{member}/tier")).json()
            return bool(tier.get("tier") == "silver")

        await eventually(silver)
    return member


async def test_the_export_holds_identity_points_tier_and_benefits_and_follows_erasure(
    gateway: Gateway,
) -> None:
    number = phone()
    member = await silver_member(gateway, number)
    coupon = await coupon_for(gateway, member)
    async with await gateway.session("mall", "personal_data:read") as privacy:
        exported = await privacy.get(f"/v1/{member}:export")
        assert exported.status_code == 200, exported.text
        body = exported.json()
        assert body["member"] == member and body["exportTime"]
        document = json.loads(body["identity"]["json"])
        assert [i["value"] for i in document["identities"]] == [f"+86{number}"]
        points = body["points"]
        assert (points["balance"]["available"], points["balance"]["tier"]) == ("6000", "silver")
        assert [(p["kind"], p["points"]) for p in points["postings"]] == [
            ("POSTING_KIND_EARN", "6000")
        ]
        tier = body["tier"]
        assert tier["standing"]["tier"] == "silver" and tier["standing"]["nextTier"] == "gold"
        assert [c["toTier"] for c in tier["history"]] == ["silver"]
        assert tier["grants"] == []
        benefits = body["benefits"]
        assert coupon in [c["code"] for c in benefits["coupons"]]  # beside the silver welcome
        # Entitlements at every unit, not only the caller's (the hotel's welcome drink).
        codes = {e["benefit"]["code"] for e in benefits["entitlements"]}
        assert "test-hotel-welcome-drink" in codes

    async with await gateway.session("group", "members:manage") as desk:
        erased = await desk.post(
            f"/v1/{member}:erase", json={"requestId": uuid.uuid4().hex, "reason": "asked"}
        )
        assert erased.status_code == 200, erased.text
    async with await gateway.session("mall", "personal_data:read") as privacy:

        async def forfeited() -> dict[str, Any] | None:
            found = (await privacy.get(f"/v1/{member}:export")).json()
            kinds = [p["kind"] for p in found["points"]["postings"]]
            # The parts are read side by side: the balance may be read just before the forfeit
            # commits and the postings just after, so wait for both.
            gone = found["points"]["balance"].get("available", "0") == "0"
            return found if "POSTING_KIND_ERASURE_FORFEIT" in kinds and gone else None

        after = await eventually(forfeited)
        assert json.loads(after["identity"]["json"])["identities"] == []
        assert after["points"]["balance"]["available"] == "0"
        assert after["points"]["postings"][0]["points"] == "-6000"
        assert after["points"]["postings"][0]["reason"] == "member erased"


async def test_the_export_needs_the_personal_data_scope_and_a_member(gateway: Gateway) -> None:
    member = await silver_member(gateway, phone())
    async with await gateway.session("mall", "earn", "profile:read") as till:
        refused = await till.get(f"/v1/{member}:export")
        assert refused.status_code == 403 and reason_of(refused) == "SCOPE_REQUIRED"
    async with await gateway.session("mall", "personal_data:read") as privacy:
        unknown = await privacy.get(f"/v1/members/{uuid.uuid4()}:export")
        assert unknown.status_code == 404, unknown.text
        # Identity's own part stays reachable on its own route.
        alone = await privacy.get(f"/v1/{member}:exportIdentity")
        assert alone.status_code == 200 and "json" in alone.json()


async def test_the_export_is_unavailable_while_a_service_is_down(
    gateway: Gateway, gateway_service: RunningService
) -> None:
    """Whole or not at all: without the benefits service, no export (503), never one that
    reads as if the member held no coupons."""
    member = await silver_member(gateway, phone())
    settings = gateway_service.context.settings.model_copy(
        update={"benefits_target": "127.0.0.1:9", "gateway_http_port": free_port()}
    )
    runner = ServiceRunner(settings)
    await runner.start(GATEWAY, settings)
    try:
        async with await gateway.session("mall", "personal_data:read") as privacy:
            token = privacy.headers["Authorization"]
        url = f"http://127.0.0.1:{settings.gateway_http_port}"
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": token}) as http:

            async def answered() -> httpx.Response | None:
                try:
                    return await http.get(f"/v1/{member}:export")
                except httpx.TransportError:
                    return None  # its HTTP server is still starting

            down = await eventually(answered)
        assert down.status_code == 503, down.text
        assert down.json()["error"]["status"] == "UNAVAILABLE"
    finally:
        await runner.stop_all()


class Listing:
    def __init__(self, items: list[int], next_page_token: str) -> None:
        self.items, self.next_page_token = items, next_page_token


async def test_every_page_of_a_list_is_read() -> None:
    pages = {"": Listing([1, 2], "a"), "a": Listing([3], "b"), "b": Listing([], "")}
    asked: list[str] = []

    async def page(token: str) -> Listing:
        asked.append(token)
        return pages[token]

    assert await every_page(page, "items") == [1, 2, 3]
    assert asked == ["", "a", "b"]
