"""The audit log as its users meet it: an API client's balance correction over gRPC lands in
the gateway's ListAuditEntries (and its HTTP route and export) with the balance before and
after and the reason; a refused admin call is recorded with its code; the table refuses to be
changed; no personal data is stored in clear."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

import grpc
import httpx
import pytest
from google.protobuf import field_mask_pb2
from loyalty.gateway.v1 import gateway_service_pb2 as gateway_pb
from loyalty.gateway.v1 import gateway_service_pb2_grpc
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_devstack.testing import metadata_for
from loyalty_kit.caller import Caller
from loyalty_kit.db import driver_connection
from loyalty_kit.server import RunningService

from tests.gateway.conftest import Gateway
from tests.gateway.test_http import register

ADMIN = Caller(
    unit="group", client_id=f"auditor-{uuid.uuid4().hex[:8]}", scopes=frozenset({"admin"})
)
T = TypeVar("T")


async def eventually(read: Callable[[], Awaitable[T | None]], seconds: float = 30.0) -> T:
    """Poll `read` until it gives something, within a deadline."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + seconds
    while True:
        found = await read()
        if found:
            return found
        if loop.time() > ends:
            raise AssertionError("nothing came within the deadline")
        await asyncio.sleep(0.1)


async def entries(gateway_service: RunningService, **filters: Any) -> list[gateway_pb.AuditEntry]:
    async with grpc.aio.insecure_channel(gateway_service.target) as channel:
        stub = gateway_service_pb2_grpc.GatewayServiceStub(channel)
        answer = await stub.ListAuditEntries(
            gateway_pb.ListAuditEntriesRequest(**filters), metadata=metadata_for(ADMIN), timeout=15
        )
    return list(answer.entries)


async def bearer(
    gateway: Gateway, unit: str, *scopes: str
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A new API client's id and the gRPC metadata of its token."""
    client_id, secret = await gateway.client(unit, *scopes)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as http:
        token = await gateway.token(http, client_id, secret)
    return client_id, (("authorization", f"Bearer {token}"),)


async def a_member(gateway: Gateway) -> str:
    async with await gateway.session("mall", "earn") as http:
        return (await register(http, "mall")).removeprefix("members/")


async def test_an_adjustment_over_grpc_lands_in_the_log_with_before_after_and_reason(
    gateway: Gateway, points_service: RunningService, gateway_service: RunningService
) -> None:
    member = await a_member(gateway)
    client_id, metadata = await bearer(gateway, "mall", "points:adjust")
    reason = f"goodwill for a late delivery {uuid.uuid4().hex[:6]}"
    async with grpc.aio.insecure_channel(points_service.target) as channel:
        stub = points_service_pb2_grpc.PointsServiceStub(channel)
        await stub.AdjustPoints(
            points_pb.AdjustPointsRequest(
                member=f"members/{member}",
                request_id=uuid.uuid4().hex,
                unit="mall",
                points=50,
                reason=reason,
            ),
            metadata=metadata,
            timeout=15,
        )

    found = await eventually(lambda: entries(gateway_service, target=member, method="AdjustPoints"))
    (entry,) = found
    assert (entry.service, entry.outcome, entry.reason) == ("points", "OK", reason)
    assert (entry.unit, entry.client_id) == ("mall", client_id)
    assert json.loads(entry.before_json)["available"] == 0
    assert json.loads(entry.after_json) == {"available": 50, "pending": 0, "points": 50}

    async with await gateway.session("group", "admin") as http:
        listed = await http.get("/v1/auditEntries", params={"target": member})
        assert listed.status_code == 200, listed.text
        assert [e["method"] for e in listed.json()["entries"]] == ["AdjustPoints"]
        as_csv = await http.get("/v1/auditEntries:export", params={"target": member})
        assert as_csv.status_code == 200, as_csv.text
        rows = list(csv.DictReader(io.StringIO(as_csv.text)))
        assert [(r["method"], r["reason"]) for r in rows] == [("AdjustPoints", reason)]
        as_lines = await http.get(
            "/v1/auditEntries:export", params={"target": member, "format": "jsonl"}
        )
        (line,) = as_lines.text.splitlines()
        assert json.loads(line)["after"]["available"] == 50
    async with await gateway.session("mall", "points:adjust") as http:
        refused = await http.get("/v1/auditEntries:export", params={"target": member})
        assert refused.status_code == 403


async def test_a_refused_admin_call_is_recorded_with_its_code_and_the_reason_header(
    gateway: Gateway, tiers_service: RunningService, gateway_service: RunningService
) -> None:
    member = await a_member(gateway)
    client_id, metadata = await bearer(gateway, "mall", "earn")
    why = f"会员投诉 {uuid.uuid4().hex[:6]}"
    async with grpc.aio.insecure_channel(tiers_service.target) as channel:
        stub = tiers_service_pb2_grpc.TiersServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateTierGrant(
                tiers_pb.CreateTierGrantRequest(
                    member=f"members/{member}", request_id=uuid.uuid4().hex
                ),
                metadata=(*metadata, ("x-loyalty-reason-bin", why.encode())),
                timeout=15,
            )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    (entry,) = await eventually(
        lambda: entries(gateway_service, target=member, method="CreateTierGrant")
    )
    assert (entry.outcome, entry.client_id, entry.reason) == ("PERMISSION_DENIED", client_id, why)
    assert entry.before_json == entry.after_json == ""

    async with await gateway.session("mall", "earn") as http:
        answer = await http.post(
            f"/v1/members/{member}/tierGrants",
            params={"requestId": uuid.uuid4().hex},
            json={"tier": "gold", "reason": ""},
            headers={"X-Loyalty-Reason": quote(f"over HTTP: {why}")},
        )
        assert answer.status_code == 403, answer.text

    async def over_http() -> list[gateway_pb.AuditEntry] | None:
        found = await entries(gateway_service, target=member, method="CreateTierGrant")
        return [e for e in found if e.reason == f"over HTTP: {why}"] or None

    assert len(await eventually(over_http)) == 1


async def test_an_operator_is_recorded_and_entries_page_by_operator(
    gateway: Gateway, identity_service: RunningService, gateway_service: RunningService
) -> None:
    operator = f"op-{uuid.uuid4().hex}"
    desk = Caller(
        unit="group", client_id="console", scopes=frozenset({"members:manage"}), operator=operator
    )
    members = [await a_member(gateway) for _ in range(3)]
    async with grpc.aio.insecure_channel(identity_service.target) as channel:
        stub = identity_service_pb2_grpc.IdentityServiceStub(channel)
        for member in members:
            await stub.SuspendMember(
                identity_pb.SuspendMemberRequest(
                    name=f"members/{member}", request_id=uuid.uuid4().hex, reason="fraud check"
                ),
                metadata=metadata_for(desk),
                timeout=15,
            )

    async def all_three() -> list[gateway_pb.AuditEntry] | None:
        found = await entries(gateway_service, operator_id=operator)
        return found if len(found) == 3 else None

    listed = await eventually(all_three)
    assert {e.target for e in listed} == set(members)
    assert all(json.loads(e.after_json) == {"state": "suspended"} for e in listed)
    assert all(json.loads(e.before_json) == {"state": "active"} for e in listed)

    walked, token, tokens = [], "", []
    async with grpc.aio.insecure_channel(gateway_service.target) as channel:
        audit = gateway_service_pb2_grpc.GatewayServiceStub(channel)
        while True:
            page = await audit.ListAuditEntries(
                gateway_pb.ListAuditEntriesRequest(
                    operator_id=operator, page_size=2, page_token=token
                ),
                metadata=metadata_for(ADMIN),
                timeout=15,
            )
            walked += [e.entry_id for e in page.entries]
            token = page.next_page_token
            tokens.append(token)
            if not token:
                break
        assert walked == [e.entry_id for e in listed]
        with pytest.raises(grpc.aio.AioRpcError) as other_filter:
            await audit.ListAuditEntries(
                gateway_pb.ListAuditEntriesRequest(method="AdjustPoints", page_token=tokens[0]),
                metadata=metadata_for(ADMIN),
                timeout=15,
            )
        assert other_filter.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_log_refuses_update_delete_and_truncate(gateway_service: RunningService) -> None:
    for statement in (
        "UPDATE audit_log SET reason = 'rewritten'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ):
        async with gateway_service.context.uow() as uow:
            conn = await driver_connection(uow.session)
            with pytest.raises(Exception, match="append-only"):
                await conn.execute(statement)


async def test_no_personal_data_is_stored_in_clear(
    gateway: Gateway, identity_service: RunningService, gateway_service: RunningService
) -> None:
    member = await a_member(gateway)
    name = f"name-{uuid.uuid4().hex}"
    region = f"region-{uuid.uuid4().hex}"
    email = f"{uuid.uuid4().hex}@example.com"
    desk = Caller(unit="mall", client_id="desk", scopes=frozenset({"members:manage"}))
    async with grpc.aio.insecure_channel(identity_service.target) as channel:
        stub = identity_service_pb2_grpc.IdentityServiceStub(channel)
        await stub.UpdateProfile(
            identity_pb.UpdateProfileRequest(
                member=f"members/{member}",
                request_id=uuid.uuid4().hex,
                profile=member_pb2.Profile(full_name=name, region=region),
                update_mask=field_mask_pb2.FieldMask(paths=["full_name", "region"]),
            ),
            metadata=metadata_for(desk),
            timeout=15,
        )
        await stub.LinkIdentity(
            identity_pb.LinkIdentityRequest(
                member=f"members/{member}",
                request_id=uuid.uuid4().hex,
                identity=member_pb2.Identity(type="email", value=email),
                unit="mall",
            ),
            metadata=metadata_for(desk),
            timeout=15,
        )

    async def both() -> list[gateway_pb.AuditEntry] | None:
        found = await entries(gateway_service, target=member)
        return found if {e.method for e in found} >= {"UpdateProfile", "LinkIdentity"} else None

    await eventually(both)
    async with gateway_service.context.uow() as uow:
        conn = await driver_connection(uow.session)
        stored = await conn.fetch(
            "SELECT audit_log::text AS row FROM audit_log WHERE target = $1", member
        )
    text = "\n".join(r["row"] for r in stored)
    assert "UpdateProfile" in text and "email" in text
    for value in (name, region, email, email.split("@")[0]):
        assert value not in text


async def test_the_gateways_own_audited_calls_are_kept_directly(
    gateway: Gateway, gateway_service: RunningService
) -> None:
    member = await a_member(gateway)
    client_id, metadata = await bearer(gateway, "mall", "earn")
    async with grpc.aio.insecure_channel(gateway_service.target) as channel:
        stub = gateway_service_pb2_grpc.GatewayServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ExportMemberData(
                gateway_pb.ExportMemberDataRequest(member=f"members/{member}"),
                metadata=(*metadata, ("x-loyalty-reason", "portability request")),
                timeout=15,
            )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    (entry,) = await eventually(
        lambda: entries(gateway_service, target=member, method="ExportMemberData")
    )
    assert (entry.service, entry.outcome) == ("gateway", "PERMISSION_DENIED")
    assert (entry.client_id, entry.reason) == (client_id, "portability request")


async def test_an_idempotent_replay_of_an_admin_call_adds_no_second_entry(
    gateway: Gateway, points_service: RunningService, gateway_service: RunningService
) -> None:
    member = await a_member(gateway)
    _, metadata = await bearer(gateway, "mall", "points:adjust")
    retried, later = uuid.uuid4().hex, uuid.uuid4().hex

    def adjustment(request_id: str, points: int) -> points_pb.AdjustPointsRequest:
        return points_pb.AdjustPointsRequest(
            member=f"members/{member}",
            request_id=request_id,
            unit="mall",
            points=points,
            reason="a retried correction",
        )

    async with grpc.aio.insecure_channel(points_service.target) as channel:
        stub = points_service_pb2_grpc.PointsServiceStub(channel)
        first = await stub.AdjustPoints(adjustment(retried, 30), metadata=metadata, timeout=15)
        again = await stub.AdjustPoints(adjustment(retried, 30), metadata=metadata, timeout=15)
        assert again == first  # the first call's answer
        # A later call of the same client: its entry comes after any the replay wrote.
        await stub.AdjustPoints(adjustment(later, 5), metadata=metadata, timeout=15)

    async def both_seen() -> list[gateway_pb.AuditEntry] | None:
        found = await entries(gateway_service, target=member, method="AdjustPoints")
        return found if later in {e.request_id for e in found} else None

    found = await eventually(both_seen)
    assert sorted(e.request_id for e in found) == sorted([retried, later])
    (entry,) = [e for e in found if e.request_id == retried]
    assert entry.outcome == "OK"
    assert json.loads(entry.after_json)["available"] == 30


async def test_a_refused_call_carrying_a_nul_character_is_still_recorded(
    gateway: Gateway, points_service: RunningService, gateway_service: RunningService
) -> None:
    member = await a_member(gateway)
    _, metadata = await bearer(gateway, "mall", "points:adjust")
    request_id = uuid.uuid4().hex
    async with grpc.aio.insecure_channel(points_service.target) as channel:
        stub = points_service_pb2_grpc.PointsServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.AdjustPoints(
                points_pb.AdjustPointsRequest(
                    member=f"members/{member}",
                    request_id=request_id,
                    unit="mall",
                    points=5,
                    reason="Wang\x00Fang",
                ),
                metadata=metadata,
                timeout=15,
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    (entry,) = await eventually(
        lambda: entries(gateway_service, target=member, method="AdjustPoints")
    )
    assert (entry.outcome, entry.request_id) == ("INVALID_ARGUMENT", request_id)
    assert entry.reason == "Wang\ufffdFang"
    assert json.loads(entry.request_json)["reason"] == "Wang\ufffdFang"
