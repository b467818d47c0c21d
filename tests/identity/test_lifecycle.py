"""A member's life after registration: identities, merges, profile, consents, suspension, tags,
erasure and export, over a real channel, with the events other services rely on."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from loyalty.identity.v1 import events_pb2, member_pb2
from loyalty.identity.v1 import identity_service_pb2 as pb
from loyalty_kit import events
from loyalty_kit.settings import Settings
from nats.js import JetStreamContext

from tests.identity.conftest import (
    MALL_POS,
    MARKETING,
    MEMBER_APP,
    SERVICE_DESK,
    IdentityClient,
)
from tests.identity.test_registration import phone, register, rid
from tests.support.events import stream_messages
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def new_member(identity: IdentityClient, number: str | None = None) -> member_pb2.Member:
    response = await identity.as_(MALL_POS).RegisterMember(register(number or phone()))
    member: member_pb2.Member = response.member
    return member


def phone_of(member: member_pb2.Member) -> str:
    return next(i.value for i in member.identities if i.type == "phone")


async def full(identity: IdentityClient, name: str) -> member_pb2.Member:
    member: member_pb2.Member = (
        await identity.as_(SERVICE_DESK).GetMember(pb.GetMemberRequest(name=name))
    ).member
    return member


async def identity_events(
    js: JetStreamContext, settings: Settings, member_id: str, until: str, count: int = 1
) -> list[tuple[str, Any]]:
    """The identity events about a member, from JetStream, as (type, message), once the event
    `until` has arrived (the relay publishes moments after each commit)."""
    classes = {
        cls.DESCRIPTOR.full_name: cls
        for cls in (
            events_pb2.MemberRegistered,
            events_pb2.MemberMerged,
            events_pb2.MemberUnmerged,
            events_pb2.MemberErased,
            events_pb2.MemberSuspended,
            events_pb2.MemberReactivated,
            events_pb2.ConsentChanged,
            events_pb2.ProfileChanged,
            events_pb2.MembersImported,
            events_pb2.LegacyOrdersImported,
        )
    }
    stream = events.stream_name(settings.event_namespace, "identity")
    for _ in range(100):  # the relay publishes within moments of the commit
        found: list[tuple[str, Any]] = []
        subject = f"{settings.event_namespace}.identity.v1.>"
        for msg in await stream_messages(js, subject, stream):
            kind = msg.headers[events.EVENT_TYPE_HEADER]
            if kind not in classes:  # an event of identity's this reader does not know
                continue
            message = classes[kind].FromString(msg.data)
            if member_id in str(message):
                found.append((kind.rsplit(".", 1)[1], message))
        if sum(kind == until for kind, _ in found) >= count:
            return found
        await asyncio.sleep(0.1)
    return []


@pytest.fixture
async def js(settings: Settings) -> Any:
    client = await events.connect(settings.nats_url, "identity-tests")
    yield client.jetstream()
    await client.close()


async def test_link_and_unlink_identities(identity: IdentityClient) -> None:
    member = await new_member(identity)
    linked = await identity.as_(MALL_POS).LinkIdentity(
        pb.LinkIdentityRequest(
            member=member.name,
            request_id=rid(),
            identity=member_pb2.Identity(type="wechat_openid", value="oX7a9_Kq2LmN4pQ8rS"),
        )
    )
    assert sorted(i.type for i in linked.member.identities) == ["phone", "wechat_openid"]
    found = await identity.as_(MALL_POS).ResolveMember(
        pb.ResolveMemberRequest(
            identity=member_pb2.Identity(type="wechat_openid", value="oX7a9_Kq2LmN4pQ8rS")
        )
    )
    assert found.member.member_id == member.member_id

    other = await new_member(identity)
    failure = await fails(
        identity.as_(MALL_POS).LinkIdentity(
            pb.LinkIdentityRequest(
                member=other.name,
                request_id=rid(),
                identity=member_pb2.Identity(type="wechat_openid", value="oX7a9_Kq2LmN4pQ8rS"),
            )
        )
    )
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "IDENTITY_ALREADY_BOUND",
    )

    number = phone_of(await full(identity, member.name))
    unlinked = await identity.as_(SERVICE_DESK).UnlinkIdentity(
        pb.UnlinkIdentityRequest(
            member=member.name,
            request_id=rid(),
            identity=member_pb2.Identity(type="phone", value=number),
        )
    )
    assert [i.type for i in unlinked.member.identities] == ["wechat_openid"]
    failure = await fails(
        identity.as_(SERVICE_DESK).UnlinkIdentity(
            pb.UnlinkIdentityRequest(
                member=member.name,
                request_id=rid(),
                identity=member_pb2.Identity(type="wechat_openid", value="oX7a9_Kq2LmN4pQ8rS"),
            )
        )
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "LAST_IDENTITY")
    # The released phone can start a new membership.
    assert (await identity.as_(MALL_POS).RegisterMember(register(number))).created


async def test_merge_keeps_everything_on_the_survivor_and_forwards_the_absorbed_id(
    identity: IdentityClient, js: JetStreamContext, settings: Settings
) -> None:
    hotel_guest = await new_member(identity)
    mall_shopper_request = register(phone())
    mall_shopper_request.identities.append(
        member_pb2.Identity(type="email", value="wei@example.com")
    )
    mall_shopper_request.profile.full_name = "李伟"
    mall_shopper = (await identity.as_(MALL_POS).RegisterMember(mall_shopper_request)).member
    await identity.as_(SERVICE_DESK).UpdateTags(
        pb.UpdateTagsRequest(
            member=mall_shopper.name, request_id=rid(), add_tags=["bu:mall-active"]
        )
    )

    merge = pb.MergeMembersRequest(
        survivor=hotel_guest.name,
        absorbed=mall_shopper.name,
        request_id=rid(),
        reason="same person",
    )
    merged = (await identity.as_(SERVICE_DESK).MergeMembers(merge)).member
    assert sorted(i.type for i in merged.identities) == ["email", "phone", "phone"]
    assert merged.profile.full_name == "李伟"  # the survivor had none: it takes the absorbed one's
    assert list(merged.tags) == ["bu:mall-active"]

    absorbed = await full(identity, mall_shopper.name)
    assert absorbed.state == member_pb2.MEMBER_STATE_MERGED
    assert absorbed.merged_into == hotel_guest.member_id
    assert not absorbed.identities
    found = await identity.as_(MALL_POS).ResolveMember(
        pb.ResolveMemberRequest(identity=member_pb2.Identity(type="email", value="WEI@example.com"))
    )
    assert found.member.member_id == hotel_guest.member_id

    # Idempotent: the same request again, or a new request for the same merge.
    again = await identity.as_(SERVICE_DESK).MergeMembers(merge)
    assert again.member.member_id == hotel_guest.member_id
    merge.request_id = rid()
    assert (await identity.as_(SERVICE_DESK).MergeMembers(merge)).member.member_id == (
        hotel_guest.member_id
    )

    # No cycle: the absorbed member cannot absorb its survivor.
    failure = await fails(
        identity.as_(SERVICE_DESK).MergeMembers(
            pb.MergeMembersRequest(
                survivor=mall_shopper.name, absorbed=hotel_guest.name, request_id=rid()
            )
        )
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "MEMBER_MERGED")
    assert failure.metadata["merged_into"] == hotel_guest.member_id

    # No chain: when the survivor is merged in turn, the first absorbed ID follows.
    vip = await new_member(identity)
    await identity.as_(SERVICE_DESK).MergeMembers(
        pb.MergeMembersRequest(survivor=vip.name, absorbed=hotel_guest.name, request_id=rid())
    )
    assert (await full(identity, mall_shopper.name)).merged_into == vip.member_id

    failure = await fails(
        identity.as_(SERVICE_DESK).MergeMembers(
            pb.MergeMembersRequest(survivor=vip.name, absorbed=vip.name, request_id=rid())
        )
    )
    assert failure.reason == "MERGE_INTO_ITSELF"

    published = await identity_events(js, settings, mall_shopper.member_id, "MemberMerged")
    merges = [m for kind, m in published if kind == "MemberMerged"]
    assert [(m.survivor_member_id, m.absorbed_member_id) for m in merges] == [
        (hotel_guest.member_id, mall_shopper.member_id)
    ]


async def test_profile_update_with_a_field_mask(
    identity: IdentityClient, js: JetStreamContext, settings: Settings
) -> None:
    member = await new_member(identity)
    profile = member_pb2.Profile(full_name="Chen Jing", region="CN-44", preferred_language="en")
    profile.birthday.year, profile.birthday.month, profile.birthday.day = 1988, 11, 22
    updated = await identity.as_(SERVICE_DESK).UpdateProfile(
        pb.UpdateProfileRequest(
            member=member.name,
            request_id=rid(),
            profile=profile,
            update_mask=field_mask_pb2.FieldMask(paths=["full_name", "birthday", "region"]),
        )
    )
    assert updated.member.profile.full_name == "Chen Jing"
    assert updated.member.profile.region == "CN-44"
    assert updated.member.profile.preferred_language == ""  # not in the mask
    masked = await identity.as_(MALL_POS).GetMember(pb.GetMemberRequest(name=member.name))
    assert masked.member.profile.full_name == "C*** J***"

    failure = await fails(
        identity.as_(SERVICE_DESK).UpdateProfile(
            pb.UpdateProfileRequest(
                member=member.name,
                request_id=rid(),
                profile=profile,
                update_mask=field_mask_pb2.FieldMask(paths=["full_name", "phone"]),
            )
        )
    )
    assert failure.fields == ["update_mask.paths[1]"]

    changes = [
        m
        for kind, m in await identity_events(js, settings, member.member_id, "ProfileChanged")
        if kind == "ProfileChanged"
    ]
    assert changes[-1].birthday_month == 11 and changes[-1].birthday_day == 22
    assert sorted(changes[-1].changed_fields) == ["birthday", "full_name", "region"]
    assert "Chen" not in str(changes[-1]) and "1988" not in str(changes[-1])


async def test_consents_and_their_history(
    identity: IdentityClient, js: JetStreamContext, settings: Settings
) -> None:
    member = await new_member(identity)
    for granted in (True, False, True):
        await identity.as_(MEMBER_APP).SetConsents(
            pb.SetConsentsRequest(
                member=member.name,
                request_id=rid(),
                source="app:privacy-settings",
                changes=[
                    member_pb2.ConsentChange(
                        purpose=member_pb2.CONSENT_PURPOSE_MARKETING_SMS, granted=granted
                    )
                ],
            )
        )
    current = (await full(identity, member.name)).consents
    assert [(c.purpose, c.granted) for c in current] == [
        (member_pb2.CONSENT_PURPOSE_MARKETING_SMS, True)
    ]
    first = await identity.as_(MALL_POS).ListConsentEvents(
        pb.ListConsentEventsRequest(member=member.name, page_size=2)
    )
    assert [e.granted for e in first.consent_events] == [True, False]
    rest = await identity.as_(MALL_POS).ListConsentEvents(
        pb.ListConsentEventsRequest(
            member=member.name, page_size=2, page_token=first.next_page_token
        )
    )
    assert [e.granted for e in rest.consent_events] == [True]
    assert rest.next_page_token == ""
    published = await identity_events(js, settings, member.member_id, "ConsentChanged", 3)
    assert [m.granted for kind, m in published if kind == "ConsentChanged"] == [True, False, True]

    failure = await fails(
        identity.as_(MEMBER_APP).SetConsents(
            pb.SetConsentsRequest(member=member.name, request_id=rid(), source="", changes=[])
        )
    )
    assert failure.fields == ["changes", "source"]


async def test_suspension(
    identity: IdentityClient, js: JetStreamContext, settings: Settings
) -> None:
    member = await new_member(identity)
    # Suspending is a member operation of the group, not of a till.
    refused = await fails(
        identity.as_(MALL_POS).SuspendMember(
            pb.SuspendMemberRequest(name=member.name, request_id=rid(), reason="no")
        )
    )
    assert (refused.reason, refused.metadata) == ("SCOPE_REQUIRED", {"scope": "members:manage"})
    suspended = await identity.as_(SERVICE_DESK).SuspendMember(
        pb.SuspendMemberRequest(
            name=member.name, request_id=rid(), reason="chargeback dispute #4411"
        )
    )
    assert suspended.member.state == member_pb2.MEMBER_STATE_SUSPENDED
    assert suspended.member.suspension_reason == "chargeback dispute #4411"
    failure = await fails(
        identity.as_(SERVICE_DESK).SuspendMember(
            pb.SuspendMemberRequest(name=member.name, request_id=rid(), reason="again")
        )
    )
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "MEMBER_SUSPENDED",
    )
    reactivated = await identity.as_(SERVICE_DESK).ReactivateMember(
        pb.ReactivateMemberRequest(name=member.name, request_id=rid(), reason="resolved")
    )
    assert reactivated.member.state == member_pb2.MEMBER_STATE_ACTIVE
    failure = await fails(
        identity.as_(SERVICE_DESK).ReactivateMember(
            pb.ReactivateMemberRequest(name=member.name, request_id=rid())
        )
    )
    assert failure.reason == "MEMBER_NOT_SUSPENDED"
    failure = await fails(
        identity.as_(SERVICE_DESK).SuspendMember(
            pb.SuspendMemberRequest(name=member.name, request_id=rid(), reason=" ")
        )
    )
    assert failure.fields == ["reason"]
    published = await identity_events(js, settings, member.member_id, "MemberReactivated")
    kinds = [kind for kind, _ in published]
    assert kinds.count("MemberSuspended") == 1 and kinds.count("MemberReactivated") == 1


async def test_tags_and_listing_a_segment_page_by_page(identity: IdentityClient) -> None:
    segment = f"segment:vip-{uuid.uuid4().hex[:8]}"
    ids = []
    for _ in range(5):
        member = await new_member(identity)
        await identity.as_(SERVICE_DESK).UpdateTags(
            pb.UpdateTagsRequest(
                member=member.name, request_id=rid(), add_tags=[segment, "bu:mall"]
            )
        )
        ids.append(member.member_id)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await identity.as_(MARKETING).ListMembers(
            pb.ListMembersRequest(tag=segment, page_size=2, page_token=token)
        )
        # The first page counts the segment (a bulk job's denominator); later pages do not.
        assert page.total_size == (5 if pages == 0 else 0)
        pages += 1
        seen += [m.member_id for m in page.members]
        assert all(m.personal_data_masked for m in page.members)
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(ids) and pages == 3
    basic = await identity.as_(MARKETING).ListMembers(
        pb.ListMembersRequest(tag=segment, page_size=10, view=pb.MEMBER_VIEW_BASIC)
    )
    assert [(m.name, m.member_id) for m in basic.members] == [
        (f"members/{i}", i) for i in sorted(ids)
    ]
    assert basic.total_size == 5 and not any(m.identities for m in basic.members)

    first = await identity.as_(MARKETING).ListMembers(
        pb.ListMembersRequest(tag=segment, page_size=2)
    )
    failure = await fails(
        identity.as_(MARKETING).ListMembers(
            pb.ListMembersRequest(tag="bu:mall", page_size=2, page_token=first.next_page_token)
        )
    )
    assert failure.fields == ["page_token"]
    failure = await fails(identity.as_(MARKETING).ListMembers(pb.ListMembersRequest(page_size=-1)))
    assert failure.fields == ["page_size"]
    failure = await fails(
        identity.as_(SERVICE_DESK).UpdateTags(
            pb.UpdateTagsRequest(
                member=f"members/{ids[0]}", request_id=rid(), add_tags=["no namespace"]
            )
        )
    )
    assert failure.fields == ["add_tags[0]"]
    removed = await identity.as_(SERVICE_DESK).UpdateTags(
        pb.UpdateTagsRequest(member=f"members/{ids[0]}", request_id=rid(), remove_tags=[segment])
    )
    assert list(removed.member.tags) == ["bu:mall"]


async def test_export_needs_the_scope_and_holds_everything_personal(
    identity: IdentityClient,
) -> None:
    request = register(phone())
    request.profile.full_name = "赵敏"
    member = (await identity.as_(MALL_POS).RegisterMember(request)).member
    failure = await fails(
        identity.as_(MALL_POS).ExportMemberData(pb.ExportMemberDataRequest(name=member.name))
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED")
    exported = await identity.as_(SERVICE_DESK).ExportMemberData(
        pb.ExportMemberDataRequest(name=member.name)
    )
    document = json.loads(exported.json)
    assert document["member_id"] == member.member_id
    assert document["profile"]["full_name"] == "赵敏"
    assert document["identities"][0]["value"] == f"+86{request.identities[0].value}"


async def test_erasure_shreds_personal_data_and_keeps_a_tombstone(
    identity: IdentityClient, js: JetStreamContext, settings: Settings
) -> None:
    number = phone()
    request = register(number)
    request.profile.full_name = "孙丽"
    request.identities.append(member_pb2.Identity(type="email", value="sun.li@example.com"))
    member = (await identity.as_(MALL_POS).RegisterMember(request)).member
    erase = pb.EraseMemberRequest(name=member.name, request_id=rid(), reason="member request")
    tombstone = (await identity.as_(SERVICE_DESK).EraseMember(erase)).member
    assert tombstone.state == member_pb2.MEMBER_STATE_ERASED
    assert tombstone.member_id == member.member_id
    assert not tombstone.identities and not tombstone.profile.full_name
    assert (await identity.as_(SERVICE_DESK).EraseMember(erase)).member.state == (
        member_pb2.MEMBER_STATE_ERASED
    )

    failure = await fails(
        identity.as_(MALL_POS).ResolveMember(
            pb.ResolveMemberRequest(identity=member_pb2.Identity(type="phone", value=number))
        )
    )
    assert failure.code == grpc.StatusCode.NOT_FOUND
    failure = await fails(
        identity.as_(SERVICE_DESK).UpdateTags(
            pb.UpdateTagsRequest(member=member.name, request_id=rid(), add_tags=["bu:mall"])
        )
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "MEMBER_ERASED")
    # The identities are released: the same phone registers a new, unrelated member.
    again = await identity.as_(MALL_POS).RegisterMember(register(number))
    assert again.created and again.member.member_id != member.member_id

    exported = json.loads(
        (
            await identity.as_(SERVICE_DESK).ExportMemberData(
                pb.ExportMemberDataRequest(name=member.name)
            )
        ).json
    )
    assert exported["identities"] == [] and exported["profile"]["full_name"] == ""
    published = await identity_events(js, settings, member.member_id, "MemberErased")
    kinds = [kind for kind, _ in published]
    assert kinds[0] == "MemberRegistered" and kinds[-1] == "MemberErased"
