"""Journeys through the gateway's HTTP/JSON routes, as a unit's marketing team's tool calls them:
its own unit's journeys only, bad input named field by field."""

from __future__ import annotations

import uuid

import pytest

from tests.gateway.conftest import Gateway, catalogue, gateway, points, programme, tiers
from tests.gateway.test_http import fields_of, reason_of

__all__ = ["catalogue", "gateway", "points", "programme", "tiers"]

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_unit_team_defines_and_pauses_its_journey_over_http(gateway: Gateway) -> None:
    async with (
        await gateway.session("mall", "engagement:write") as mall,
        await gateway.session("hotel", "engagement:read") as hotel,
    ):
        created = await mall.post(
            "/v1/journeys",
            params={"requestId": uuid.uuid4().hex},
            json={
                "displayName": "mall first purchase",
                "unit": "mall",
                "trigger": {"kind": "TRIGGER_KIND_PURCHASE", "unit": "mall"},
                "steps": [{"issueCoupon": {"template": "test-mall-15"}}],
                "controlShare": 0.1,
            },
        )
        assert created.status_code == 201, created.text
        journey = created.json()["journey"]
        assert (journey["unit"], journey["state"], journey["version"]) == (
            "mall",
            "JOURNEY_STATE_DRAFT",
            1,
        )
        name = journey["name"]
        resumed = await mall.post(f"/v1/{name}:resume", json={"requestId": uuid.uuid4().hex})
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["journey"]["state"] == "JOURNEY_STATE_ACTIVE"
        paused = await mall.post(f"/v1/{name}:pause", json={"requestId": uuid.uuid4().hex})
        assert paused.json()["journey"]["state"] == "JOURNEY_STATE_PAUSED"
        listed = await mall.get("/v1/journeys", params={"pageSize": 200})
        assert name in [j["name"] for j in listed.json()["journeys"]]
        foreign = await hotel.get(f"/v1/{name}")
        assert foreign.status_code == 403
        assert reason_of(foreign) == "UNIT_MISMATCH"
        assert name not in [
            j["name"] for j in (await hotel.get("/v1/journeys")).json().get("journeys", [])
        ]
        bad = await mall.post(
            "/v1/journeys",
            params={"requestId": uuid.uuid4().hex},
            json={
                "displayName": "bad",
                "trigger": {"kind": "TRIGGER_KIND_PURCHASE"},
                "controlShare": 2,
            },
        )
        assert bad.status_code == 400, bad.text
        assert set(fields_of(bad)) == {"journey.steps", "journey.control_share"}
