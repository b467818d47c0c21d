"""The member 360 flows against this run's services: a seeded member's 360 has every part,
an adjustment with a reason shows in the statement, a unit manager is refused another unit's
member, and a service down leaves its part unavailable."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from loyalty.identity.v1 import member_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty_devstack.testing import metadata_for
from loyalty_gateway.adapters.backends import Backends
from loyalty_gateway.adapters.services import Services
from loyalty_gateway.flows.member360 import OUT_OF_REACH, Member360, MemberActions
from loyalty_kit.caller import Caller
from loyalty_kit.errors import PermissionDenied
from loyalty_kit.server import RunningService

from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.asyncio(loop_scope="session")

ADMIN = Caller(unit="group", client_id="console", scopes=frozenset({"admin"}))
PARTS = {
    "profile", "identities", "consents", "consent_history", "balance", "lots", "statement",
    "tier", "tier_history", "tier_grants", "entitlements", "coupons", "messages", "segments",
    "challenges", "badges",
}  # fmt: skip


def manager(unit: str) -> Caller:
    scopes = "points:adjust coupons:issue insights:read engagement:read personal_data:read"
    return Caller(unit=unit, client_id="console", scopes=frozenset(scopes.split()))


@pytest_asyncio.fixture(loop_scope="session")
async def reads(gateway: Gateway, gateway_service: RunningService) -> AsyncIterator[Member360]:
    backends = Backends(gateway_service.context.settings)
    yield Member360(Services(backends), 10.0)
    await backends.close()


async def seeded(gateway: Gateway, unit: str) -> tuple[str, str]:
    """A new member registered and earning at `unit`: (name, phone)."""
    phone = f"137{uuid.uuid4().int % 10**8:08d}"
    async with await gateway.session(unit, "earn") as http:
        made = await http.post(
            "/v1/members:register",
            json={
                "requestId": uuid.uuid4().hex,
                "unit": unit,
                "identities": [{"type": "phone", "value": phone}],
            },
        )
        assert made.status_code == 200, made.text
        member = str(made.json()["member"]["name"])
        earned = await http.post(
            f"/v1/{member}/points:earn",
            json={
                "requestId": uuid.uuid4().hex,
                "unit": unit,
                "orderId": f"M-{uuid.uuid4().hex[:8]}",
                "lines": [{"lineId": "1", "amount": {"currencyCode": "CNY", "amount": "100.00"}}],
            },
        )
        assert earned.status_code == 200, earned.text
    return member, phone


async def test_a_seeded_members_360_has_every_part(gateway: Gateway, reads: Member360) -> None:
    member, phone = await seeded(gateway, "hotel")
    (hit,) = await reads.find_members(metadata_for(ADMIN), phone)
    assert hit.member == member and hit.registered_unit == "hotel"
    assert hit.identities[0][0] == "phone" and phone not in hit.identities[0][1]  # masked

    view = await reads.member_360(metadata_for(ADMIN), ADMIN, member)
    assert view.unavailable == []
    assert set(view.parts) == PARTS
    assert view.member.name == member
    assert view.parts["lots"].lots[0].remaining_points == 200
    assert view.parts["statement"].postings[0].unit == "hotel"
    assert view.parts["tier"].tier  # the base tier at least


async def test_an_adjustment_with_a_reason_shows_in_the_statement(
    gateway: Gateway, reads: Member360
) -> None:
    member, _ = await seeded(gateway, "hotel")
    actions, caller = MemberActions(reads), manager("hotel")
    request_id = f"console.{uuid.uuid4()}"
    reason = f"客服补偿 {uuid.uuid4().hex[:6]}"
    for _ in range(2):  # a double submit is one adjustment
        done = await actions.adjust_points(
            metadata_for(caller), caller, member,
            unit="hotel", points=30, request_id=request_id, reason=reason,
        )  # fmt: skip
    assert done.posting.points == 30
    page = await reads.statement(metadata_for(caller), caller, member)
    adjusted = [p for p in page.postings if p.kind == points_pb.POSTING_KIND_ADJUST]
    assert [(p.points, p.reason) for p in adjusted] == [(30, reason)]


async def test_a_unit_manager_is_refused_another_units_member(
    gateway: Gateway, reads: Member360
) -> None:
    member, _ = await seeded(gateway, "mall")
    cinema = manager("cinema")
    with pytest.raises(PermissionDenied) as raised:
        await reads.member_360(metadata_for(cinema), cinema, member)
    assert raised.value.reason == OUT_OF_REACH
    with pytest.raises(PermissionDenied):
        await MemberActions(reads).adjust_points(
            metadata_for(cinema), cinema, member,
            unit="cinema", points=10, request_id=f"console.{uuid.uuid4()}", reason="test",
        )  # fmt: skip
    view = await reads.member_360(metadata_for(manager("mall")), manager("mall"), member)
    assert view.member.name == member


async def test_a_service_down_leaves_its_part_unavailable(
    gateway: Gateway, gateway_service: RunningService
) -> None:
    member, _ = await seeded(gateway, "hotel")
    settings = gateway_service.context.settings.model_copy(
        update={"benefits_target": "127.0.0.1:9"}
    )
    backends = Backends(settings)
    try:
        degraded = Member360(Services(backends), 3.0)
        view = await degraded.member_360(metadata_for(ADMIN), ADMIN, member)
    finally:
        await backends.close()
    assert sorted(view.unavailable) == ["coupons", "entitlements"]
    assert view.parts["balance"].balance.available + view.parts["balance"].balance.pending == 200


async def test_an_unknown_member_is_not_found(reads: Member360) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await reads.member_360(metadata_for(ADMIN), ADMIN, f"members/{uuid.uuid4()}")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_customer_service_suspends_and_reactivates_with_a_reason(
    gateway: Gateway, reads: Member360
) -> None:
    member, _ = await seeded(gateway, "mall")
    desk = Caller(
        unit="group",
        client_id="console",
        scopes=frozenset({"points:adjust", "members:manage", "personal_data:read"}),
    )
    md, actions = metadata_for(desk), MemberActions(reads)
    (hit,) = await reads.find_members(md, member.removeprefix("members/"))
    assert hit.member == member
    why = f"退款纠纷 {uuid.uuid4().hex[:6]}"
    suspended = await actions.suspend(
        md, desk, member, request_id=f"console.{uuid.uuid4()}", reason=why
    )
    assert suspended.member.suspension_reason == why
    back = await actions.reactivate(
        md, desk, member, request_id=f"console.{uuid.uuid4()}", reason="核实完毕"
    )
    assert back.member.state == member_pb2.MEMBER_STATE_ACTIVE
