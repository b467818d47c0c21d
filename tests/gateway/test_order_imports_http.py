"""Order imports over HTTP, end to end: a unit's API client uploads its past orders to `POST
/v1/orderImports` (the spec in `X-Import-Spec`, the file as the raw body), follows the import
on `GET /v1/orderImports/{id}` to SUCCEEDED, and sees the orders downstream: as qualifying
activity in the tiers service (ACTIVITY_ONLY, no points), or as earns in the points service
(REPLAY, under the rules then in force). Another unit's orders are refused (403
PERMISSION_DENIED), and so is a malformed spec (400 naming the fields).

The members are registered over HTTP by the same client, with phones of this test only, so
the assertions hold whatever the session's other tests imported."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import Gateway
from tests.gateway.test_http import error_of, fields_of, reason_of
from tests.gateway.test_imports_http import until_ended, upload
from tests.identity.import_files import csv_bytes

pytestmark = pytest.mark.asyncio(loop_scope="session")

SCOPES = ("earn", "members:import")  # to register the members, then to import their orders
ORDER_HEADER = ("mobile", "order_no", "amount", "paid_at")
MAPPING = {"phone": "mobile", "orderId": "order_no", "amount": "amount", "occurredAt": "paid_at"}


def spec_header(**over: Any) -> str:
    spec: dict[str, Any] = {
        "unit": "mall",
        "mapping": MAPPING,
        "fileName": f"mall-orders-{uuid.uuid4().hex[:8]}.csv",
    }
    spec.update(over)
    return json.dumps(spec)


async def send(http: httpx.AsyncClient, data: bytes, spec: str) -> httpx.Response:
    return await upload(http, data, spec, content_type="text/csv", collection="orderImports")


async def member_with_phone(http: httpx.AsyncClient) -> tuple[str, str]:
    """A member registered at the mall's counter: (resource name, phone)."""
    phone = f"135{uuid.uuid4().int % 10**8:08d}"
    registered = await http.post(
        "/v1/members:register",
        json={
            "requestId": uuid.uuid4().hex,
            "unit": "mall",
            "channel": "CHANNEL_POS",
            "identities": [{"type": "phone", "value": phone}],
        },
    )
    assert registered.status_code == 200, registered.text
    return str(registered.json()["member"]["name"]), phone


def when(days_ago: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago)).isoformat(timespec="seconds")


def order_id() -> str:
    return f"MO-{uuid.uuid4().hex[:10]}"


def orders_file(rows: Sequence[Sequence[str]]) -> bytes:
    return csv_bytes(ORDER_HEADER, rows)


async def imported(http: httpx.AsyncClient, data: bytes, spec: str) -> dict[str, Any]:
    """The order import of `data`, uploaded and followed until it ended."""
    created = await send(http, data, spec)
    assert created.status_code == 201, created.text
    made = created.json()["orderImport"]
    assert made["name"].startswith("orderImports/")
    assert made["spec"]["format"] == "IMPORT_FORMAT_CSV"  # from the Content-Type
    assert made["fileBytes"] == str(len(data))
    return await until_ended(http, made["name"])


async def spend_reaches(http: httpx.AsyncClient, member: str, expected: str) -> None:
    """Wait until the tiers service counts `expected` of qualifying spend in the window."""
    spend = None
    for _ in range(200):
        found = await http.get(f"/v1/{member}/tier")
        assert found.status_code == 200, found.text
        spend = sum(
            Decimal(p["current"])
            for p in found.json().get("progress", [])
            if p["metric"] == "METRIC_QUALIFYING_SPEND"
        )
        if spend == Decimal(expected):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{member}'s spend never reached {expected}; it is {spend}")


async def earns_of(http: httpx.AsyncClient, member: str, count: int) -> list[tuple[str, str]]:
    """(order ID, points) of the member's earn postings, once there are `count`."""
    found: list[tuple[str, str]] = []
    for _ in range(200):
        listed = await http.get(f"/v1/{member}/postings")
        assert listed.status_code == 200, listed.text
        found = sorted(
            (p["orderId"], p["points"])
            for p in listed.json().get("postings", [])
            if p["kind"] == "POSTING_KIND_EARN"
        )
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{member} has {len(found)} earns, not {count}")


async def test_past_orders_imported_over_http_are_activity_in_tiers_and_no_points(
    gateway: Gateway,
) -> None:
    async with await gateway.session("mall", *SCOPES) as http:
        (ming, ming_phone), (li, li_phone) = (
            await member_with_phone(http),
            await member_with_phone(http),
        )
        data = orders_file(
            [
                (ming_phone, order_id(), "1200.00", when(100)),
                (ming_phone, order_id(), "800.50", when(20)),
                (li_phone, order_id(), "300.00", when(3)),
                (f"134{uuid.uuid4().int % 10**8:08d}", order_id(), "99.00", when(5)),  # nobody's
            ]
        )

        ended = await imported(http, data, spec_header())

        assert ended["state"] == "STATE_SUCCEEDED", ended
        assert ended["spec"]["mode"] == "ORDER_IMPORT_MODE_ACTIVITY_ONLY"  # the default
        progress = ended["progress"]
        assert (progress["rowsRead"], progress["imported"], progress["unknownMember"]) == (
            "4",
            "3",
            "1",
        )
        report = await http.get(f"/v1/{ended['name']}/rows")
        assert report.status_code == 200, report.text
        assert [r["rowNumber"] for r in report.json()["rows"]] == ["4"]
        await spend_reaches(http, ming, "2000.50")
        await spend_reaches(http, li, "300")
        for member in (ming, li):
            balance = await http.get(f"/v1/{member}/balance")
            assert balance.status_code == 200, balance.text
            assert int(balance.json().get("available", "0")) == 0  # activity earns no points


async def test_past_orders_replayed_over_http_earn_points_as_offline_receipts(
    gateway: Gateway,
) -> None:
    async with await gateway.session("mall", *SCOPES) as http:
        member, phone = await member_with_phone(http)
        first, second = order_id(), order_id()
        data = orders_file([(phone, first, "100.00", when(40)), (phone, second, "250.00", when(8))])

        ended = await imported(http, data, spec_header(mode="ORDER_IMPORT_MODE_REPLAY"))

        assert ended["state"] == "STATE_SUCCEEDED", ended
        assert ended["progress"]["imported"] == "2"
        # The mall's one point a yuan under the programme in force then; the purchases count
        # for tiers through these earns.
        assert await earns_of(http, member, 2) == sorted([(first, "100"), (second, "250")])
        await spend_reaches(http, member, "350")

        # The same file again: each order is carried over once.
        again = await imported(http, data, spec_header(mode="ORDER_IMPORT_MODE_REPLAY"))
        assert again["state"] == "STATE_SUCCEEDED", again
        assert (again["progress"]["imported"], again["progress"]["duplicates"]) == ("0", "2")


async def test_another_units_orders_and_a_malformed_spec_are_refused(gateway: Gateway) -> None:
    async with await gateway.session("mall", *SCOPES) as mall:
        _, phone = await member_with_phone(mall)
        data = orders_file([(phone, order_id(), "10.00", when(2))])
        made = await send(mall, data, spec_header())
        assert made.status_code == 201, made.text
        name = made.json()["orderImport"]["name"]

        no_order_id = await send(
            mall, data, spec_header(mapping={k: v for k, v in MAPPING.items() if k != "orderId"})
        )
        assert no_order_id.status_code == 400, no_order_id.text
        assert error_of(no_order_id)["status"] == "INVALID_ARGUMENT"
        assert any("order_id" in f or "orderId" in f for f in fields_of(no_order_id))

        no_unit = await send(mall, data, spec_header(unit=""))
        assert no_unit.status_code == 400, no_unit.text
        assert any("unit" in f for f in fields_of(no_unit))

        unknown_mode = await send(mall, data, spec_header(mode="ORDER_IMPORT_MODE_TWICE"))
        assert unknown_mode.status_code == 400 and fields_of(unknown_mode) == ["X-Import-Spec"]

        members_spec = await send(mall, data, spec_header(tierMapping={"金卡": "gold"}))
        assert members_spec.status_code == 400 and fields_of(members_spec) == ["X-Import-Spec"]
        assert "tierMapping" in error_of(members_spec)["message"]

    async with await gateway.session("hotel", *SCOPES) as hotel:
        refused = await send(hotel, data, spec_header())  # the mall's orders
        assert refused.status_code == 403, refused.text
        assert error_of(refused)["status"] == "PERMISSION_DENIED"
        assert reason_of(refused) == "UNIT_MISMATCH"
        read = await hotel.get(f"/v1/{name}")
        assert read.status_code in (403, 404), read.text
        listed = await hotel.get("/v1/orderImports")
        assert listed.status_code == 200, listed.text
        assert name not in [i["name"] for i in listed.json().get("orderImports", [])]
