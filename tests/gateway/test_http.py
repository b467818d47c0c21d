"""HTTP/JSON through the gateway, derived from the contracts, against the real services."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import httpx
import pytest
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty_kit.server import RunningService

from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.asyncio(loop_scope="session")


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


def reason_of(response: httpx.Response) -> str:
    info = [d for d in error_of(response)["details"] if d["@type"].endswith("ErrorInfo")]
    return str(info[0]["reason"])


def fields_of(response: httpx.Response) -> list[str]:
    found = [d for d in error_of(response)["details"] if d["@type"].endswith("BadRequest")]
    return [v["field"] for v in found[0]["fieldViolations"]] if found else []


async def register(http: httpx.AsyncClient, unit: str = "mall") -> str:
    """A new member, registered by the client of `unit` behind `http` (at its own counter)."""
    phone = f"136{uuid.uuid4().int % 10**8:08d}"
    response = await http.post(
        "/v1/members:register",
        json={
            "requestId": uuid.uuid4().hex,
            "unit": unit,
            "channel": "CHANNEL_POS",
            "identities": [{"type": "phone", "value": phone}],
        },
    )
    assert response.status_code == 200, response.text
    return str(response.json()["member"]["name"])


async def test_a_unit_registers_earns_and_reads_over_http_with_json_from_the_contracts(
    gateway: Gateway,
) -> None:
    async with await gateway.session("hotel", "earn", "redeem") as http:
        member = await register(http, "hotel")
        assert member.startswith("members/")
        earned = await http.post(
            f"/v1/{member}/points:earn",
            json={
                "requestId": uuid.uuid4().hex,
                "unit": "hotel",
                "orderId": f"H-{uuid.uuid4().hex[:8]}",
                "lines": [{"lineId": "1", "amount": {"currencyCode": "CNY", "amount": "1234.56"}}],
            },
        )
        assert earned.status_code == 200, earned.text
        posting = earned.json()["posting"]
        assert posting["points"] == "2469"  # int64 as a JSON string (proto3 JSON)
        assert posting["breakdown"]["exactPoints"] == "2469.12"
        balance = await http.get(f"/v1/{member}/balance")
        assert balance.status_code == 200
        body = balance.json()["balance"]
        assert body["pending"] == "2469"
        assert body["available"] == "0"  # unpopulated fields are written too
        assert balance.headers["X-Request-Id"]


async def test_errors_are_google_rpc_status_json_with_http_codes(gateway: Gateway) -> None:
    async with await gateway.session("hotel", "earn") as http:
        unknown_field = await http.post(
            "/v1/members:register", json={"requestId": "x1", "favouriteColour": "red"}
        )
        assert unknown_field.status_code == 400
        assert error_of(unknown_field)["status"] == "INVALID_ARGUMENT"
        assert fields_of(unknown_field) == ["body"]

        bad_member = await http.get("/v1/members/not-a-uuid/balance")
        assert bad_member.status_code == 400
        assert fields_of(bad_member) == ["member"]

        missing = await http.get(f"/v1/members/{uuid.uuid4()}")
        assert missing.status_code == 404
        assert error_of(missing)["status"] == "NOT_FOUND"

        not_admin = await http.put("/v1/ladder", json={"requestId": "l1", "ladder": {}})
        assert not_admin.status_code == 403  # the tiers service itself checked the token
        assert reason_of(not_admin) == "SCOPE_REQUIRED"

        no_route = await http.get("/v1/nowhere")
        assert no_route.status_code == 404 and reason_of(no_route) == "NO_ROUTE"
        wrong_verb = await http.delete("/v1/ladder")
        assert wrong_verb.status_code == 405 and wrong_verb.headers["Allow"] == "GET, PUT"
        wrong_verb = await http.delete("/v1/purchases:record")
        assert wrong_verb.status_code == 405 and wrong_verb.headers["Allow"] == "POST"
        assert (error_of(wrong_verb)["code"], error_of(wrong_verb)["status"]) == (
            405,
            "UNIMPLEMENTED",
        )
        assert reason_of(wrong_verb) == "METHOD_NOT_ALLOWED"

        bad_query = await http.get(
            "/v1/members:resolve", params={"identity.type": "phone", "pageSize": "lots"}
        )
        assert bad_query.status_code == 400 and fields_of(bad_query) == ["pageSize"]


async def test_without_a_valid_token_nothing_passes(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        anonymous = await http.get("/v1/ladder")
        assert anonymous.status_code == 401 and reason_of(anonymous) == "TOKEN_MISSING"
        client_id, secret = await gateway.client("mall", "earn")
        wrong = await http.post(
            "/v1/token", data={"client_id": client_id, "client_secret": secret + "x"}
        )
        assert wrong.status_code == 401 and reason_of(wrong) == "INVALID_CLIENT"
        basic = await http.post("/v1/token", auth=(client_id, secret))
        assert basic.status_code == 200
        token = basic.json()["access_token"]
        assert basic.json()["expires_in"] == 900 and basic.json()["unit"] == "mall"
        tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        forged = await http.get("/v1/ladder", headers={"Authorization": f"Bearer {tampered}"})
        assert forged.status_code == 401 and reason_of(forged) == "TOKEN_INVALID"
        ok = await http.get("/v1/ladder", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200

        async with gateway.service.context.uow() as uow:
            from loyalty_gateway.adapters.clients import ClientStore

            await ClientStore(uow.session).revoke(client_id)
            await uow.commit()
        revoked = await http.post("/v1/token", auth=(client_id, secret))
        assert revoked.status_code == 401 and reason_of(revoked) == "CLIENT_REVOKED"


async def test_each_client_has_a_rate_limit_with_retry_after(gateway: Gateway) -> None:
    async with await gateway.session("cinema", "earn", rate=3) as http:
        answers = await asyncio.gather(*(http.get("/v1/ladder") for _ in range(8)))
    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) == 3 and codes.count(429) == 5
    limited = next(a for a in answers if a.status_code == 429)
    assert reason_of(limited) == "RATE_LIMITED"
    assert int(limited.headers["Retry-After"]) >= 1


async def test_request_ids_and_trace_context_come_back(gateway: Gateway) -> None:
    trace_id = uuid.uuid4().hex
    parent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    async with await gateway.session("mall", "earn") as http:
        response = await http.get(
            "/v1/ladder", headers={"X-Request-Id": "pos-42", "traceparent": parent}
        )
    assert response.headers["X-Request-Id"] == "pos-42"
    assert response.headers["traceresponse"].split("-")[1] == trace_id


async def test_the_same_token_works_over_grpc_directly(
    gateway: Gateway, points_service: RunningService
) -> None:
    """A backend team calls a service over gRPC with the credential the gateway issued."""
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        token = await gateway.token(http, *(await gateway.client("hotel", "earn")))
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        member = await register(http, "hotel")
    async with grpc.aio.insecure_channel(points_service.target) as channel:
        stub = points_service_pb2_grpc.PointsServiceStub(channel)
        balance = await stub.GetBalance(
            points_pb.GetBalanceRequest(member=member),
            metadata=(("authorization", f"Bearer {token}"),),
        )
        assert balance.balance.available == 0  # the call went through, as this client
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetBalance(
                points_pb.GetBalanceRequest(member=member),
                metadata=(("authorization", f"Bearer {token}x"),),
            )
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_openapi_document_and_docs_come_from_the_same_annotations(
    gateway: Gateway,
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        document = (await http.get("/openapi.json")).json()
        docs = await http.get("/docs")
        script = await http.get("/docs/static/swagger-ui-bundle.js")
    redeem = document["paths"]["/v1/members/{memberId}/points:redeem"]["post"]
    assert redeem["operationId"] == "PointsService_RedeemPoints"
    body = redeem["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][body.split("/")[-1]]
    assert "member" not in schema["properties"] and "requestId" in schema["properties"]
    assert document["paths"]["/v1/members/{memberId}/tierGrants"]["post"]["responses"]["201"]
    assert "swagger-ui-bundle.js" in docs.text and "http" not in docs.text.split("<body>")[1]
    assert script.status_code == 200 and len(script.content) > 100_000


async def test_query_strings_take_the_json_forms_of_times_masks_and_nested_fields(
    gateway: Gateway,
) -> None:
    """Timestamps in RFC 3339, field masks as comma-separated camelCase paths, names in
    camelCase or snake_case, as grpc-gateway's clients send them."""
    async with await gateway.session("group", "admin") as admin:
        for start in ("startTime", "start_time"):
            settled = await admin.get(
                "/v1/settlement",
                params={start: "2026-01-01T00:00:00Z", "endTime": "2026-02-01T00:00:00+08:00"},
            )
            assert settled.status_code == 200, settled.text
        old_form = await admin.get(
            "/v1/settlement", params={"start_time.seconds": "0", "end_time.seconds": "60"}
        )
        assert old_form.status_code == 200, old_form.text
        bad_time = await admin.get(
            "/v1/settlement", params={"startTime": "yesterday", "endTime": "2026-02-01T00:00:00Z"}
        )
        assert bad_time.status_code == 400 and fields_of(bad_time) == ["startTime"]
        registered = await admin.post(
            "/v1/members:register",
            json={
                "requestId": uuid.uuid4().hex,
                "unit": "mall",
                "identities": [{"type": "phone", "value": f"139{uuid.uuid4().int % 10**8:08d}"}],
            },
        )
        member = registered.json()["member"]["name"]
        renamed = await admin.patch(
            f"/v1/{member}/profile",
            params={"updateMask": "fullName,gender", "requestId": uuid.uuid4().hex},
            json={"fullName": "Li Wei", "gender": "GENDER_UNSPECIFIED"},
        )
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["member"]["profile"]["fullName"] == "Li Wei"


async def test_every_operation_is_described_with_its_query_parameters(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        document = (await http.get("/openapi.json")).json()
    operations = [op for path in document["paths"].values() for op in path.values()]
    undescribed = [op["operationId"] for op in operations if not op.get("description")]
    assert undescribed == ["Token"] or undescribed == []
    settlement = document["paths"]["/v1/settlement"]["get"]["parameters"]
    assert {(p["name"], p["required"]) for p in settlement} >= {
        ("startTime", True),
        ("endTime", True),
    }
    resolve = {p["name"] for p in document["paths"]["/v1/members:resolve"]["get"]["parameters"]}
    assert {"identity.type", "identity.value"} <= resolve
    update = document["paths"]["/v1/members/{memberId}/profile"]["patch"]["parameters"]
    assert "updateMask" in {p["name"] for p in update}
    schemas = document["components"]["schemas"]
    redeem = schemas["loyalty.points.v1.RedeemPointsRequestBody"]
    assert {"requestId", "points"} <= set(redeem["required"])
    assert redeem["properties"]["points"]["description"]
