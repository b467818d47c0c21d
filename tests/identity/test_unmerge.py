"""UnmergeMembers over a real channel: a wrong merge undone, the identities named going back to
the restored member, every refusal, a retry, the audit log and the event other services follow."""

from __future__ import annotations

from typing import Any

import asyncpg
import grpc
import pytest
from loyalty.identity.v1 import identity_service_pb2 as pb
from loyalty.identity.v1 import member_pb2
from loyalty_kit.db import asyncpg_params
from loyalty_kit.settings import Settings
from nats.js import JetStreamContext
from sqlalchemy.engine import make_url

from tests.identity.conftest import ADMIN, MALL_POS, MARKETING, SERVICE_DESK, IdentityClient
from tests.identity.test_lifecycle import full, identity_events, js, new_member, phone_of
from tests.identity.test_registration import phone, register, rid
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")
__all__ = ["js"]  # the fixture, used by name


async def merged_pair(identity: IdentityClient) -> tuple[member_pb2.Member, member_pb2.Member]:
    """A survivor with its phone, and a member with a phone and an email merged into it."""
    survivor = await new_member(identity)
    request = register(phone())
    request.identities.append(member_pb2.Identity(type="email", value=f"{rid()[:8]}@example.com"))
    request.profile.full_name = "王芳"
    absorbed = (await identity.as_(MALL_POS).RegisterMember(request)).member
    await identity.as_(SERVICE_DESK).MergeMembers(
        pb.MergeMembersRequest(
            survivor=survivor.name, absorbed=absorbed.name, request_id=rid(), reason="same phone"
        )
    )
    return await full(identity, survivor.name), await full(identity, absorbed.name)


def identities_of(member: member_pb2.Member, *types: str) -> list[member_pb2.Identity]:
    chosen = [i for i in member.identities if i.type in types]
    return [member_pb2.Identity(type=i.type, value=i.value) for i in chosen]


def unmerge(
    survivor: member_pb2.Member,
    restored: member_pb2.Member,
    identities: list[member_pb2.Identity],
    reason: str = "two people sharing a family phone",
) -> pb.UnmergeMembersRequest:
    return pb.UnmergeMembersRequest(
        survivor=survivor.name,
        restored=restored.name,
        request_id=rid(),
        identities=identities,
        reason=reason,
    )


async def audit_rows(settings: Settings, member_id: str) -> list[Any]:
    conn = await asyncpg.connect(
        **asyncpg_params(make_url(str(settings.service_database_url("identity"))))
    )
    try:
        return list(
            await conn.fetch(
                "SELECT action, related_member_id::text AS related, unit, client_id, reason, "
                "detail FROM member_audit WHERE member_id = $1 ORDER BY seq",
                member_id,
            )
        )
    finally:
        await conn.close()


async def test_unmerge_gives_the_named_identities_back_to_an_active_restored_member(
    identity: IdentityClient, js: JetStreamContext, settings: Settings
) -> None:
    survivor, absorbed = await merged_pair(identity)
    merged_survivor = await full(identity, survivor.name)
    own_phone = phone_of(merged_survivor)  # the survivor's own phone is linked first
    theirs = [i for i in identities_of(merged_survivor, "phone", "email") if i.value != own_phone]
    assert len(theirs) == 2

    answer = await identity.as_(SERVICE_DESK).UnmergeMembers(unmerge(survivor, absorbed, theirs))

    restored = answer.restored
    assert restored.member_id == absorbed.member_id
    assert restored.state == member_pb2.MEMBER_STATE_ACTIVE
    assert not restored.merged_into
    assert sorted((i.type, i.value) for i in restored.identities) == sorted(
        (i.type, i.value) for i in theirs
    )
    # The merge shredded the absorbed member's personal data: it starts again without it.
    assert not restored.profile.full_name and not restored.consents and not restored.tags
    assert [(i.type, i.value) for i in answer.survivor.identities] == [("phone", own_phone)]
    assert answer.survivor.profile.full_name == "王芳"  # what the survivor took, it keeps

    for given in theirs:
        found = await identity.as_(MALL_POS).ResolveMember(pb.ResolveMemberRequest(identity=given))
        assert found.member.member_id == absorbed.member_id
    # The restored member is a member like any other again: it changes and can be merged.
    await identity.as_(SERVICE_DESK).UpdateTags(
        pb.UpdateTagsRequest(member=absorbed.name, request_id=rid(), add_tags=["bu:hotel-active"])
    )

    published = await identity_events(js, settings, absorbed.member_id, "MemberUnmerged")
    unmerged = [m for kind, m in published if kind == "MemberUnmerged"]
    assert [(m.survivor_member_id, m.restored_member_id) for m in unmerged] == [
        (survivor.member_id, absorbed.member_id)
    ]
    merged = next(m for kind, m in published if kind == "MemberMerged")
    assert unmerged[0].merged_at == merged.merged_at
    assert unmerged[0].unmerged_at.ToDatetime() >= merged.merged_at.ToDatetime()


async def test_a_retry_answers_the_first_unmerge_and_a_second_one_is_refused(
    identity: IdentityClient,
) -> None:
    survivor, absorbed = await merged_pair(identity)
    merged_survivor = await full(identity, survivor.name)
    request = unmerge(survivor, absorbed, identities_of(merged_survivor, "email"))
    first = await identity.as_(SERVICE_DESK).UnmergeMembers(request)
    again = await identity.as_(SERVICE_DESK).UnmergeMembers(request)
    assert again.restored.member_id == first.restored.member_id == absorbed.member_id
    assert [i.type for i in again.restored.identities] == ["email"]

    request.request_id = rid()
    failure = await fails(identity.as_(SERVICE_DESK).UnmergeMembers(request))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_MERGED_INTO",
    )


async def test_unmerge_refusals_are_clear(identity: IdentityClient) -> None:
    survivor, absorbed = await merged_pair(identity)
    merged_survivor = await full(identity, survivor.name)
    email = identities_of(merged_survivor, "email")
    desk = identity.as_(SERVICE_DESK)

    # A member that was never merged, or merged into someone else.
    stranger = await new_member(identity)
    failure = await fails(desk.UnmergeMembers(unmerge(survivor, stranger, email)))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_MERGED_INTO",
    )
    assert failure.metadata["survivor"] == survivor.member_id
    failure = await fails(desk.UnmergeMembers(unmerge(stranger, absorbed, email)))
    assert failure.reason == "NOT_MERGED_INTO"
    assert failure.metadata["merged_into"] == survivor.member_id
    failure = await fails(desk.UnmergeMembers(unmerge(survivor, survivor, email)))
    assert failure.reason == "NOT_MERGED_INTO"

    # An identity the survivor does not hold, and none at all: field violations.
    elsewhere = member_pb2.Identity(
        type="phone", value=phone_of(await full(identity, stranger.name))
    )
    failure = await fails(desk.UnmergeMembers(unmerge(survivor, absorbed, [*email, elsewhere])))
    assert (failure.code, failure.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert failure.fields == ["identities[1]"]
    failure = await fails(desk.UnmergeMembers(unmerge(survivor, absorbed, [])))
    assert failure.fields == ["identities"]
    failure = await fails(desk.UnmergeMembers(unmerge(survivor, absorbed, email, reason=" ")))
    assert failure.fields == ["reason"]

    # The survivor keeps at least one identity.
    everything = identities_of(merged_survivor, "phone", "email")
    failure = await fails(desk.UnmergeMembers(unmerge(survivor, absorbed, everything)))
    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "LAST_IDENTITY")

    # Members operations only: a till may not, an admin may.
    failure = await fails(identity.as_(MALL_POS).UnmergeMembers(unmerge(survivor, absorbed, email)))
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED")

    # A survivor merged in turn names its own survivor; an erased one is erased.
    later = await new_member(identity)
    await desk.MergeMembers(
        pb.MergeMembersRequest(survivor=later.name, absorbed=survivor.name, request_id=rid())
    )
    failure = await fails(desk.UnmergeMembers(unmerge(survivor, absorbed, email)))
    assert (failure.reason, failure.metadata["merged_into"]) == ("MEMBER_MERGED", later.member_id)
    await desk.EraseMember(pb.EraseMemberRequest(name=later.name, request_id=rid()))
    failure = await fails(desk.UnmergeMembers(unmerge(later, absorbed, email)))
    assert failure.reason == "MEMBER_ERASED"


async def test_merges_and_unmerges_land_in_the_audit_log(
    identity: IdentityClient, settings: Settings
) -> None:
    survivor, absorbed = await merged_pair(identity)
    merged_survivor = await full(identity, survivor.name)
    await identity.as_(ADMIN).UnmergeMembers(
        unmerge(survivor, absorbed, identities_of(merged_survivor, "email"), reason="ticket 2210")
    )
    rows = await audit_rows(settings, survivor.member_id)
    assert [(r["action"], r["related"], r["unit"], r["client_id"]) for r in rows] == [
        ("merge", absorbed.member_id, SERVICE_DESK.unit, SERVICE_DESK.client_id),
        ("unmerge", absorbed.member_id, ADMIN.unit, ADMIN.client_id),
    ]
    assert (rows[0]["reason"], rows[1]["reason"]) == ("same phone", "ticket 2210")
    assert '"identity_types": ["email"]' in rows[1]["detail"]
    restored_rows = await audit_rows(settings, absorbed.member_id)
    assert [(r["action"], r["related"]) for r in restored_rows] == [("unmerge", survivor.member_id)]
    # No personal data in the log: types, never values.
    everything = "".join(str(dict(r)) for r in rows + restored_rows)
    assert all(i.value not in everything for i in merged_survivor.identities)


async def test_a_manager_without_personal_data_sees_the_answer_masked(
    identity: IdentityClient,
) -> None:
    survivor, absorbed = await merged_pair(identity)
    merged_survivor = await full(identity, survivor.name)
    answer = await identity.as_(MARKETING).UnmergeMembers(
        unmerge(survivor, absorbed, identities_of(merged_survivor, "email"))
    )
    assert answer.restored.personal_data_masked
    assert "***" in answer.restored.identities[0].value
