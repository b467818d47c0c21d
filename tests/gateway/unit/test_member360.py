"""The member 360's rules without services: what a search text is, the reason every action
needs, and which members a unit-scoped caller reaches."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import member_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty_gateway.adapters.services import Call
from loyalty_gateway.flows.member360 import (
    OUT_OF_REACH,
    REASON_KEY,
    Member360,
    MemberActions,
    classify,
    masked,
)
from loyalty_kit.caller import Caller
from loyalty_kit.errors import InvalidArgument, PermissionDenied

MEMBER = "members/6f1c2b1e-0d3a-4a55-9a43-1b7f0d2a9c11"


def kinds(query: str) -> list[str]:
    return [i.type for i in classify(query).identities]


def test_a_search_text_is_a_member_id_a_phone_an_email_a_card_or_a_legacy_number() -> None:
    assert classify(MEMBER).member == MEMBER
    assert classify(MEMBER.removeprefix("members/")).member == MEMBER
    assert kinds("li.na@example.cn") == ["email"]
    assert kinds("13800138000") == ["phone", "store_card"]  # digits: either
    assert kinds("+86 138-0013-8000") == ["phone"]
    assert kinds("CARD00042X") == ["store_card"]
    legacy = classify("mall:A-00917").identities
    assert [(i.type, i.value) for i in legacy] == [
        ("unit_member_no", "mall:A-00917"),
        ("legacy:mall", "A-00917"),
    ]


@pytest.mark.parametrize("query", ["", "  ", "李娜", "members/x", "hello world", "x" * 300])
def test_anything_else_is_a_field_violation_on_query(query: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        classify(query)
    assert [v.field for v in raised.value.field_violations] == ["query"]


def test_a_profile_shown_unmasked_by_mistake_is_masked_here() -> None:
    member = member_pb2.Member(
        name=MEMBER,
        identities=[member_pb2.Identity(type="phone", value="+8613800138000")],
        profile=member_pb2.Profile(full_name="李娜", region="SH"),
    )
    shown = masked(member)
    assert shown.personal_data_masked
    assert shown.identities[0].value.endswith("8000") and "138001" not in shown.identities[0].value
    assert shown.profile.full_name == "李*" and not shown.profile.region


class FakeServices:
    """Identity and points as far as the reach rule and the actions ask them."""

    def __init__(self, registered_unit: str, posting_units: tuple[str, ...] = ()) -> None:
        self.member = member_pb2.Member(name=MEMBER, registered_unit=registered_unit)
        self.posting_units = posting_units
        self.asked: list[tuple[str, Any]] = []

    async def get_member(self, call: Any, member: str) -> identity_pb.GetMemberResponse:
        return identity_pb.GetMemberResponse(member=self.member)

    async def list_postings_at(
        self, call: Any, member: str, unit: str, page_size: int, page_token: str = ""
    ) -> points_pb.ListPostingsResponse:
        postings = [points_pb.Posting(unit=unit)] if unit in self.posting_units else []
        return points_pb.ListPostingsResponse(postings=postings)

    async def adjust_points(self, call: Any, *args: Any) -> str:
        self.asked.append(("adjust", (call, *args)))
        return "adjusted"


def actions(services: FakeServices) -> MemberActions:
    return MemberActions(Member360(services, 5.0))  # type: ignore[arg-type]


def adjust(services: FakeServices, caller: Caller, reason: str = "goodwill") -> Any:
    async def run() -> Any:
        return await actions(services).adjust_points(
            (), caller, MEMBER, unit="hotel", points=50, request_id="console.r1", reason=reason
        )

    return asyncio.run(run())


@pytest.mark.parametrize("reason", ["", "   \t"])
def test_every_action_needs_a_reason(reason: str) -> None:
    services = FakeServices("hotel")
    with pytest.raises(InvalidArgument) as raised:
        adjust(services, Caller(unit="group", scopes=frozenset({"admin"})), reason)
    assert [v.field for v in raised.value.field_violations] == ["reason"]
    assert services.asked == []


def test_the_reason_travels_as_binary_metadata_and_in_the_request() -> None:
    services = FakeServices("hotel")
    assert adjust(services, Caller(unit="group"), "客服补偿 #12") == "adjusted"
    ((_, (call, *args)),) = services.asked
    assert args[-1] == "客服补偿 #12"
    assert call.reason.encode() == "客服补偿 #12".encode()
    assert REASON_KEY.endswith("-bin")


def test_a_unit_manager_reaches_members_registered_or_posted_at_its_unit_only() -> None:
    manager = Caller(unit="hotel", scopes=frozenset({"points:adjust"}))
    assert adjust(FakeServices("hotel"), manager) == "adjusted"
    assert adjust(FakeServices("mall", posting_units=("hotel",)), manager) == "adjusted"
    stranger = FakeServices("mall", posting_units=("cinema",))
    with pytest.raises(PermissionDenied) as raised:
        adjust(stranger, manager)
    assert raised.value.reason == OUT_OF_REACH
    assert stranger.asked == []
    assert adjust(stranger, Caller(unit="group")) == "adjusted"  # the group reaches everyone


def test_with_identity_down_a_unit_manager_still_reaches_by_postings() -> None:
    reads = Member360(FakeServices("mall", posting_units=("hotel",)), 5.0)  # type: ignore[arg-type]

    async def reach(unit: str) -> None:
        manager = Caller(unit=unit)
        await reads.check_reach(Call.each((), 1.0), manager, MEMBER, None)

    asyncio.run(reach("hotel"))
    with pytest.raises(PermissionDenied):
        asyncio.run(reach("mall"))  # registered there, perhaps, but identity cannot say
