"""Behaviour points over HTTP: POST /v1/members/{member}/activities through the gateway, as a
unit's app backend records a check-in, with the contract's JSON, its retry, its refusals."""

from __future__ import annotations

import uuid

import pytest

from tests.gateway.conftest import Gateway
from tests.gateway.test_http import fields_of, reason_of, register

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_unit_records_a_check_in_over_http_once_a_day(gateway: Gateway) -> None:
    async with await gateway.session("mall", "earn") as http:
        member = await register(http, "mall")
        body = {
            "unit": "mall",
            "activityType": "check_in",
            "activityId": f"app-{uuid.uuid4().hex}",
            "attributes": {"entrance": "north"},
        }
        first = await http.post(f"/v1/{member}/activities", json=body)
        assert first.status_code == 200, first.text
        recorded = first.json()["activity"]
        assert recorded["points"] == "10"  # int64 as a JSON string
        assert (recorded["fundingUnit"], recorded["limitReason"]) == ("mall", "")
        assert recorded["attributes"] == {"entrance": "north"}

        retry = await http.post(f"/v1/{member}/activities", json=body)
        assert retry.json()["activity"] == recorded

        second = await http.post(
            f"/v1/{member}/activities",
            json={**body, "activityId": f"app-{uuid.uuid4().hex}"},
        )
        assert second.json()["activity"]["points"] == "0"
        assert second.json()["activity"]["limitReason"] == "LIMIT_REACHED"
        balance = await http.get(f"/v1/{member}/balance")
        assert balance.json()["balance"]["available"] == "10"

        reused = await http.post(
            f"/v1/{member}/activities", json={**body, "activityType": "review"}
        )
        assert (reused.status_code, reason_of(reused)) == (409, "ACTIVITY_ID_REUSED")


async def test_bad_activities_and_other_units_are_refused_over_http(gateway: Gateway) -> None:
    async with await gateway.session("mall", "earn") as http:
        member = await register(http, "mall")
        unknown = await http.post(
            f"/v1/{member}/activities",
            json={"unit": "mall", "activityType": "jogging", "activityId": "a-1"},
        )
        assert unknown.status_code == 400
        assert fields_of(unknown) == ["activity_type"]
        no_key = await http.post(
            f"/v1/{member}/activities", json={"unit": "mall", "activityType": "check_in"}
        )
        assert no_key.status_code == 400 and fields_of(no_key) == ["activity_id"]
        future = await http.post(
            f"/v1/{member}/activities",
            json={
                "unit": "mall",
                "activityType": "check_in",
                "activityId": f"a-{uuid.uuid4().hex}",
                "occurTime": "2099-01-01T00:00:00Z",
            },
        )
        assert future.status_code == 400 and fields_of(future) == ["occur_time"]
        for_hotel = await http.post(
            f"/v1/{member}/activities",
            json={"unit": "hotel", "activityType": "check_in", "activityId": "a-2"},
        )
        assert (for_hotel.status_code, reason_of(for_hotel)) == (403, "UNIT_MISMATCH")
