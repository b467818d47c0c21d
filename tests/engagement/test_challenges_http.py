"""Challenges, badges and leaderboards through the gateway's HTTP/JSON routes: a unit's team
defines its unit's challenge, a member's progress and badges are read by the member app, bad
input is named field by field."""

from __future__ import annotations

import uuid

import pytest

from tests.gateway.conftest import Gateway, catalogue, gateway, points, programme, tiers
from tests.gateway.test_http import fields_of, reason_of

__all__ = ["catalogue", "gateway", "points", "programme", "tiers"]

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_unit_team_defines_its_challenge_and_a_member_app_reads_progress_over_http(
    gateway: Gateway,
) -> None:
    member_id = str(uuid.uuid4())
    async with (
        await gateway.session("cinema", "engagement:write") as cinema,
        await gateway.session("hotel", "engagement:read") as hotel,
        await gateway.session("mall", "profile:read") as app,
    ):
        created = await cinema.post(
            "/v1/challenges",
            params={"requestId": uuid.uuid4().hex},
            json={
                "displayName": "5 cinema visits in 2 months",
                "goal": {"kind": "GOAL_KIND_PURCHASES", "target": 5, "unit": "cinema"},
                "window": {"kind": "WINDOW_KIND_ROLLING_DAYS", "days": 61},
                "reward": {"couponTemplate": "test-mall-15", "badge": "cinephile"},
            },
        )
        assert created.status_code == 201, created.text
        challenge = created.json()["challenge"]
        assert (challenge["unit"], challenge["goal"]["target"]) == ("cinema", "5")
        foreign = await hotel.get(f"/v1/{challenge['name']}")
        assert (foreign.status_code, reason_of(foreign)) == (403, "UNIT_MISMATCH")
        progress = await app.get(f"/v1/members/{member_id}/challenges")
        assert progress.status_code == 200, progress.text
        mine = [p for p in progress.json()["progress"] if p["challenge"] == challenge["name"]]
        assert [(p["target"], p.get("value", "0")) for p in mine] == [("5", "0")]
        held = await app.get(f"/v1/members/{member_id}/badges")
        assert (held.status_code, held.json().get("badges", [])) == (200, [])
        bad = await cinema.post(
            "/v1/challenges",
            params={"requestId": uuid.uuid4().hex},
            json={
                "displayName": "bad",
                "goal": {"kind": "GOAL_KIND_SPEND", "target": 100},
                "window": {"kind": "WINDOW_KIND_MONTH"},
                "reward": {"points": 10, "fundingUnit": "mall"},
            },
        )
        assert bad.status_code == 400, bad.text
        assert fields_of(bad) == ["challenge.reward.funding_unit"]
        refused = await app.post(
            f"/v1/members/{member_id}/badges:grant",
            json={"badge": "vip", "reason": "x", "requestId": uuid.uuid4().hex},
        )
        assert (refused.status_code, reason_of(refused)) == (403, "SCOPE_REQUIRED")


async def test_the_member_overview_shows_challenges_and_badges(gateway: Gateway) -> None:
    async with (
        await gateway.session("group", "admin") as admin,
        await gateway.session("mall", "profile:read") as app,
    ):
        registered = await admin.post(
            "/v1/members:register",
            json={
                "requestId": uuid.uuid4().hex,
                "unit": "mall",
                "identities": [{"type": "phone", "value": f"137{uuid.uuid4().int % 10**8:08d}"}],
            },
        )
        member = registered.json()["member"]["name"]
        created = await admin.post(
            "/v1/challenges",
            params={"requestId": uuid.uuid4().hex},
            json={
                "displayName": f"check-in week {uuid.uuid4().hex[:6]}",
                "goal": {"kind": "GOAL_KIND_STREAK", "target": 7, "activityType": "check_in"},
                "window": {"kind": "WINDOW_KIND_MONTH"},
                "reward": {"badge": "regular"},
            },
        )
        assert created.status_code == 201, created.text
        granted = await admin.post(
            f"/v1/{member}/badges:grant",
            json={"badge": "founder", "reason": "opening day", "requestId": uuid.uuid4().hex},
        )
        assert granted.status_code == 200, granted.text
        overview = (await app.get(f"/v1/{member}/overview")).json()
    assert overview.get("unavailable", []) == []
    assert [b["badge"] for b in overview["badges"]] == ["founder"]
    shown = [
        c for c in overview["challenges"] if c["challenge"] == created.json()["challenge"]["name"]
    ]
    assert [(c["target"], c.get("completed", False)) for c in shown] == [("7", False)]
