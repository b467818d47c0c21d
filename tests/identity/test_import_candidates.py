"""Rows whose identities belong to two members, over a real channel: left to an operator as
merge candidates (listed with masked evidence, resolved with a merge or dismissed, every
decision audited), or merged by the spec's phone-and-name rule."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import grpc
import pytest
from loyalty.identity.v1 import identity_service_pb2 as ipb
from loyalty.identity.v1 import member_import_pb2 as pb
from loyalty.identity.v1 import member_pb2
from loyalty_devstack.testing import metadata_for
from loyalty_kit.caller import Caller
from loyalty_kit.db import asyncpg_params
from loyalty_kit.settings import Settings
from nats.js import JetStreamContext
from sqlalchemy.engine import make_url

from tests.identity.conftest import MALL_POS, SERVICE_DESK, IdentityClient
from tests.identity.import_files import (
    Person,
    hotel_file,
    hotel_spec,
    imported,
    imported_events,
    importer,
    population,
    report,
    stub,
)
from tests.identity.test_lifecycle import identity_events, js
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")
__all__ = ["js"]  # the fixture, used by name

HOTEL = importer("hotel")
MALL = importer("mall")


async def registered(identity: IdentityClient, kind: str, value: str, name: str) -> str:
    """A member the mall registered with one identity and a name; its id."""
    made = await identity.as_(MALL_POS).RegisterMember(
        ipb.RegisterMemberRequest(
            request_id=uuid.uuid4().hex,
            unit="mall",
            identities=[member_pb2.Identity(type=kind, value=value)],
            profile=member_pb2.Profile(full_name=name),
        )
    )
    return str(made.member.member_id)


async def member(identity: IdentityClient, member_id: str) -> member_pb2.Member:
    found = await identity.as_(SERVICE_DESK).GetMember(
        ipb.GetMemberRequest(name=f"members/{member_id}")
    )
    result: member_pb2.Member = found.member
    return result


async def candidates(
    identity: IdentityClient, caller: Caller, name: str = ""
) -> list[pb.MergeCandidate]:
    listed = await stub(identity.channel).ListMergeCandidates(
        pb.ListMergeCandidatesRequest(member_import=name), metadata=metadata_for(caller), timeout=15
    )
    return list(listed.merge_candidates)


def resolve(candidate: pb.MergeCandidate, survivor: str, request_id: str = "") -> Any:
    return pb.ResolveMergeCandidateRequest(
        name=candidate.name,
        request_id=request_id or uuid.uuid4().hex,
        survivor_member_id=survivor,
        merge=True,
        reason="same guest: phone and e-mail checked with her",
    )


async def audit(settings: Settings, table: str, key: str, value: str) -> list[Any]:
    conn = await asyncpg.connect(
        **asyncpg_params(make_url(str(settings.service_database_url("identity"))))
    )
    try:
        return list(
            await conn.fetch(
                f"SELECT action, client_id, reason, detail FROM {table} WHERE {key} = $1 "
                "ORDER BY seq",
                value,
            )
        )
    finally:
        await conn.close()


def masked(text: str, person: Person) -> bool:
    return person.phone not in text and person.email not in text and person.name not in text


async def test_a_row_pointing_at_two_members_is_a_candidate_an_operator_resolves_or_dismisses(
    identity: IdentityClient, settings: Settings, js: JetStreamContext
) -> None:
    p0, p1, p2 = population(3)
    a = await registered(identity, "phone", p0.phone, "王芳")
    b = await registered(identity, "email", p0.email, "王芳")
    c = await registered(identity, "phone", p1.phone, "李伟")
    d = await registered(identity, "email", p1.email, "李伟")

    made = await imported(
        identity.channel, HOTEL, hotel_spec(), hotel_file([p0, p1, p2], [p0, p1, p2])
    )

    assert made.state == pb.MemberImport.STATE_SUCCEEDED, made.error
    assert (made.progress.candidates, made.progress.created) == (2, 1)
    rows = await report(identity.channel, HOTEL, made.name)
    first, second, third = rows
    assert (first.outcome, first.reason, first.member_id) == (
        pb.IMPORT_ROW_OUTCOME_MERGE_CANDIDATE,
        "MATCHES_TWO_MEMBERS",
        "",
    )
    assert first.merge_candidate and masked(first.detail, p0) and "****" in first.detail
    assert third.outcome == pb.IMPORT_ROW_OUTCOME_CREATED
    listed = await candidates(identity, HOTEL, made.name)
    assert [c.name for c in listed] == [first.merge_candidate, second.merge_candidate]
    one = listed[0]
    assert one.state == pb.MergeCandidate.STATE_OPEN and one.row_number == 1
    assert sorted((e.member_id, e.identity_type) for e in one.evidence) == sorted(
        [(a, "phone"), (b, "email")]
    )
    assert all(masked(e.masked_value, p0) for e in one.evidence)
    foreign = await fails(candidates(identity, MALL, made.name))
    assert foreign.reason == "UNIT_MISMATCH"
    assert all(c.unit == "mall" for c in await candidates(identity, MALL))

    # An importer lists them; deciding is the group's member operators'.
    refused = await fails(
        stub(identity.channel).ResolveMergeCandidate(
            resolve(one, a), metadata=metadata_for(HOTEL), timeout=15
        )
    )
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED")
    not_theirs = await fails(
        stub(identity.channel).ResolveMergeCandidate(
            resolve(one, c), metadata=metadata_for(SERVICE_DESK), timeout=15
        )
    )
    assert (not_theirs.reason, not_theirs.fields) == (
        "NOT_A_CANDIDATE_MEMBER",
        ["survivor_member_id"],
    )

    request = resolve(one, a)
    decided = await stub(identity.channel).ResolveMergeCandidate(
        request, metadata=metadata_for(SERVICE_DESK), timeout=15
    )
    again = await stub(identity.channel).ResolveMergeCandidate(
        request, metadata=metadata_for(SERVICE_DESK), timeout=15
    )
    assert again == decided
    assert decided.merge_candidate.state == pb.MergeCandidate.STATE_RESOLVED
    assert decided.merge_candidate.survivor_member_id == a
    survivor = await member(identity, a)
    assert sorted(i.type for i in survivor.identities) == ["email", "legacy:hotel", "phone"]
    absorbed = await member(identity, b)
    assert (absorbed.state, absorbed.merged_into) == (member_pb2.MEMBER_STATE_MERGED, a)
    merged = await identity_events(js, settings, a, "MemberMerged")
    assert [kind for kind, _ in merged].count("MemberMerged") == 1
    # Two events: the chunk's (the created row), then the resolved row's own.
    chunk, joined = await imported_events(settings, made.name)
    assert [m.created for m in chunk.members] == [True]
    [carried] = joined.members
    assert (carried.member_id, carried.created, carried.legacy_points) == (
        a,
        False,
        1000 + p0.index,
    )

    dismissed = await stub(identity.channel).DismissMergeCandidate(
        pb.DismissMergeCandidateRequest(
            name=second.merge_candidate, request_id=uuid.uuid4().hex, reason="two people"
        ),
        metadata=metadata_for(SERVICE_DESK),
        timeout=15,
    )
    assert dismissed.merge_candidate.state == pb.MergeCandidate.STATE_DISMISSED
    assert [i.type for i in (await member(identity, c)).identities] == ["phone"]
    assert [i.type for i in (await member(identity, d)).identities] == ["email"]
    late = await fails(
        stub(identity.channel).ResolveMergeCandidate(
            resolve(dismissed.merge_candidate, c), metadata=metadata_for(SERVICE_DESK), timeout=15
        )
    )
    assert (late.code, late.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "MERGE_CANDIDATE_DECIDED",
    )

    # The report and the counts follow the decisions.
    after = await report(identity.channel, HOTEL, made.name)
    assert [(r.outcome, r.reason, r.member_id) for r in after[:2]] == [
        (pb.IMPORT_ROW_OUTCOME_MERGED, "RESOLVED", a),
        (pb.IMPORT_ROW_OUTCOME_REJECTED, "DISMISSED", ""),
    ]
    ended = await stub(identity.channel).GetMemberImport(
        pb.GetMemberImportRequest(name=made.name), metadata=metadata_for(HOTEL), timeout=15
    )
    p = ended.member_import.progress
    assert (p.rows_read, p.candidates, p.merged, p.rejected, p.created) == (3, 0, 1, 1, 1)

    # Every decision is in the audit logs, without personal data.
    import_id = made.name.removeprefix("memberImports/")
    logged = await audit(settings, "import_audit", "import_id", import_id)
    assert [(r["action"], r["client_id"]) for r in logged] == [
        ("create", "hotel-crm"),
        ("resolve", SERVICE_DESK.client_id),
        ("dismiss", SERVICE_DESK.client_id),
    ]
    assert all(masked(str(dict(r)), p0) and masked(str(dict(r)), p1) for r in logged)
    merges = await audit(settings, "member_audit", "member_id", a)
    assert [(r["action"], r["client_id"]) for r in merges] == [("merge", SERVICE_DESK.client_id)]


async def test_the_phone_and_name_rule_merges_without_an_operator(
    identity: IdentityClient, settings: Settings, js: JetStreamContext
) -> None:
    p0, p1 = population(2)
    a = await registered(identity, "phone", p0.phone, p0.name)
    b = await registered(identity, "email", p0.email, f" {p0.name} ")
    c = await registered(identity, "phone", p1.phone, p1.name)
    d = await registered(identity, "email", p1.email, "某某")  # another name: not merged
    spec = hotel_spec()
    spec.auto_merge = pb.AUTO_MERGE_RULE_PHONE_AND_NAME

    made = await imported(identity.channel, HOTEL, spec, hotel_file([p0, p1], [p0, p1]))

    assert (made.progress.merged, made.progress.candidates) == (1, 1)
    rows = await report(identity.channel, HOTEL, made.name)
    assert [(r.outcome, r.member_id) for r in rows] == [
        (pb.IMPORT_ROW_OUTCOME_MERGED, a),
        (pb.IMPORT_ROW_OUTCOME_MERGE_CANDIDATE, ""),
    ]
    absorbed = await member(identity, b)
    assert (absorbed.state, absorbed.merged_into) == (member_pb2.MEMBER_STATE_MERGED, a)
    assert sorted(i.type for i in (await member(identity, a)).identities) == [
        "email",
        "legacy:hotel",
        "phone",
    ]
    assert [kind for kind, _ in await identity_events(js, settings, a, "MemberMerged")].count(
        "MemberMerged"
    ) == 1
    [merged_by] = await audit(settings, "member_audit", "member_id", a)
    assert merged_by["client_id"] == f"import:{made.name.removeprefix('memberImports/')}"
    assert {(await member(identity, x)).state for x in (c, d)} == {member_pb2.MEMBER_STATE_ACTIVE}
    [event] = await imported_events(settings, made.name)
    assert [(m.member_id, m.created) for m in event.members] == [(a, False)]
