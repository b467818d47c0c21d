"""Registering and resolving members: one member per person, whatever channel they come through."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from loyalty.common.v1 import channel_pb2
from loyalty.identity.v1 import identity_service_pb2 as pb
from loyalty.identity.v1 import member_pb2
from loyalty.points.v1 import events_pb2 as points_events
from loyalty_kit.settings import Settings
from sqlalchemy import text

from tests.identity.conftest import (
    ADMIN,
    CINEMA_POS,
    HOTEL_POS,
    MALL_POS,
    SERVICE_DESK,
    IdentityClient,
)
from tests.support.events import publish
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")


def rid() -> str:
    return uuid.uuid4().hex


def phone() -> str:
    """A fresh valid mainland mobile number, e.g. 13912345678."""
    return f"139{uuid.uuid4().int % 10**8:08d}"


def register(number: str, **extra: object) -> pb.RegisterMemberRequest:
    return pb.RegisterMemberRequest(
        request_id=rid(),
        identities=[member_pb2.Identity(type="phone", value=number)],
        unit="mall",
        channel=channel_pb2.CHANNEL_POS,
        **extra,  # type: ignore[arg-type]
    )


async def test_register_then_resolve_from_any_spelling_of_the_phone(
    identity: IdentityClient,
) -> None:
    number = phone()
    created = await identity.as_(MALL_POS).RegisterMember(register(number))
    assert created.created
    member_id = created.member.member_id
    assert created.member.name == f"members/{member_id}"
    assert created.member.state == member_pb2.MEMBER_STATE_ACTIVE
    assert created.member.registered_unit == "mall"
    assert created.member.registered_channel == channel_pb2.CHANNEL_POS

    spellings = [
        number,
        f"+86{number}",
        f"+86 {number[:3]} {number[3:7]} {number[7:]}",
        f"0086-{number}",
    ]
    for spelling in spellings:
        found = await identity.as_(MALL_POS).ResolveMember(
            pb.ResolveMemberRequest(identity=member_pb2.Identity(type="phone", value=spelling))
        )
        assert found.member.member_id == member_id


async def test_personal_data_is_masked_without_the_scope(identity: IdentityClient) -> None:
    number = phone()
    profile = member_pb2.Profile(full_name="王小明", region="CN-31")
    profile.birthday.year, profile.birthday.month, profile.birthday.day = 1990, 5, 17
    request = register(number, profile=profile)
    request.identities.append(member_pb2.Identity(type="email", value="Xiaoming.Wang@Example.com"))
    masked = (await identity.as_(MALL_POS).RegisterMember(request)).member
    assert masked.personal_data_masked
    values = {i.type: i.value for i in masked.identities}
    assert values["phone"] == f"+86{number[:3]}****{number[-4:]}"
    assert values["email"] == "x***@example.com"
    assert masked.profile.full_name == "王**"
    assert not masked.profile.HasField("birthday")

    full = (
        await identity.as_(SERVICE_DESK).GetMember(pb.GetMemberRequest(name=masked.name))
    ).member
    assert not full.personal_data_masked
    values = {i.type: i.value for i in full.identities}
    assert values == {"phone": f"+86{number}", "email": "xiaoming.wang@example.com"}
    assert full.profile.full_name == "王小明"
    assert (full.profile.birthday.year, full.profile.birthday.month) == (1990, 5)


async def test_registering_a_bound_identity_returns_the_existing_member(
    identity: IdentityClient,
) -> None:
    number = phone()
    first = await identity.as_(MALL_POS).RegisterMember(register(number))
    again = register(f"+86 {number}")
    again.unit = "hotel"
    second = await identity.as_(HOTEL_POS).RegisterMember(again)
    assert not second.created
    assert second.member.member_id == first.member.member_id
    assert list(second.already_bound_types) == ["phone"]


async def test_a_retry_returns_the_first_answer_and_writes_nothing(
    identity: IdentityClient,
) -> None:
    request = register(phone())
    first = await identity.as_(MALL_POS).RegisterMember(request)
    retry = await identity.as_(MALL_POS).RegisterMember(request)
    assert retry.created and retry.member.member_id == first.member.member_id
    changed = pb.RegisterMemberRequest()
    changed.CopyFrom(request)
    changed.identities[0].value = phone()
    failure = await fails(identity.as_(MALL_POS).RegisterMember(changed))
    assert (failure.code, failure.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED")
    assert failure.fields == ["request_id"]


async def test_identities_of_two_members_are_refused_naming_the_conflict(
    identity: IdentityClient,
) -> None:
    a = await identity.as_(MALL_POS).RegisterMember(register(phone()))
    b_request = register(phone())
    b_request.identities.append(member_pb2.Identity(type="store_card", value="HY20261122"))
    b = await identity.as_(MALL_POS).RegisterMember(b_request)
    a_phone = (
        (await identity.as_(SERVICE_DESK).GetMember(pb.GetMemberRequest(name=a.member.name)))
        .member.identities[0]
        .value
    )
    both = pb.RegisterMemberRequest(
        request_id=rid(),
        unit="cinema",
        identities=[
            member_pb2.Identity(type="phone", value=a_phone),
            member_pb2.Identity(type="store_card", value="HY20261122"),
        ],
    )
    failure = await fails(identity.as_(CINEMA_POS).RegisterMember(both))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "IDENTITY_ALREADY_BOUND",
    )
    assert failure.metadata == {"phone": a.member.member_id, "store_card": b.member.member_id}
    assert failure.domain == "identity.loyalty"


async def test_fifty_concurrent_registrations_with_one_phone_make_one_member(
    identity: IdentityClient,
) -> None:
    number = phone()
    answers = await asyncio.gather(
        *(identity.as_(MALL_POS).RegisterMember(register(number)) for _ in range(50))
    )
    assert len({a.member.member_id for a in answers}) == 1
    assert sum(a.created for a in answers) == 1


@pytest.mark.parametrize(
    ("identities", "fields"),
    [
        ([], ["identities"]),
        ([("phone", "12345")], ["identities[0].value"]),
        ([("phone", "")], ["identities[0].value"]),
        ([("email", "not-an-email")], ["identities[0].value"]),
        ([("fax", "010-1234")], ["identities[0].type"]),
        ([("wechat_openid", "short")], ["identities[0].value"]),
        ([("phone", "13800138000"), ("email", "a@@b")], ["identities[1].value"]),
    ],
)
async def test_bad_identities_are_named_in_field_violations(
    identity: IdentityClient, identities: list[tuple[str, str]], fields: list[str]
) -> None:
    request = pb.RegisterMemberRequest(
        request_id=rid(),
        unit="mall",
        identities=[member_pb2.Identity(type=t, value=v) for t, v in identities],
    )
    failure = await fails(identity.as_(MALL_POS).RegisterMember(request))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.fields == fields


async def test_bad_profile_unit_and_request_id_are_all_reported_at_once(
    identity: IdentityClient,
) -> None:
    request = register(phone())
    request.unit = "Mall Shop!"
    request.profile.birthday.year, request.profile.birthday.month = 1990, 2
    request.profile.birthday.day = 30
    # An admin may act for any unit: validation, not authorisation, answers.
    failure = await fails(identity.as_(ADMIN).RegisterMember(request))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.fields == ["profile.birthday"]

    request = register(phone())
    request.unit = "Mall Shop!"
    request.profile.birthday.year, request.profile.birthday.month = 2999, 1
    request.profile.birthday.day = 1
    request.profile.preferred_language = "chinese please"
    request.consents.append(member_pb2.ConsentChange())
    failure = await fails(identity.as_(ADMIN).RegisterMember(request))
    assert failure.fields == [
        "unit",
        "profile.birthday",
        "profile.preferred_language",
        "consents[0].purpose",
    ]

    request = register(phone())
    request.request_id = ""
    failure = await fails(identity.as_(MALL_POS).RegisterMember(request))
    assert failure.fields == ["request_id"]


async def test_unknown_and_malformed_member_ids(identity: IdentityClient) -> None:
    missing = f"members/{uuid.uuid4()}"
    failure = await fails(identity.as_(MALL_POS).GetMember(pb.GetMemberRequest(name=missing)))
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "MEMBER_NOT_FOUND")
    for bad in ("", "members/", "members/123", "customers/" + str(uuid.uuid4())):
        failure = await fails(identity.as_(MALL_POS).GetMember(pb.GetMemberRequest(name=bad)))
        assert (failure.code, failure.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["name"])


async def test_resolving_an_unknown_identity_is_not_found(identity: IdentityClient) -> None:
    failure = await fails(
        identity.as_(MALL_POS).ResolveMember(
            pb.ResolveMemberRequest(identity=member_pb2.Identity(type="phone", value=phone()))
        )
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "MEMBER_NOT_FOUND")
    assert failure.metadata == {"identity_type": "phone"}


async def test_identity_types_are_data(identity: IdentityClient) -> None:
    types = await identity.as_(MALL_POS).ListIdentityTypes(pb.ListIdentityTypesRequest())
    codes = [t.code for t in types.identity_types]
    assert {"phone", "email", "wechat_openid", "wechat_unionid", "store_card"} <= set(codes)
    assert codes == sorted(codes)
    alipay = pb.UpsertIdentityTypeRequest(
        identity_type=member_pb2.IdentityType(
            code="alipay_uid", kind=member_pb2.IDENTITY_KIND_TOKEN, pattern=r"2088[0-9]{12}"
        )
    )
    refused = await fails(identity.as_(MALL_POS).UpsertIdentityType(alipay))
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED")
    await identity.as_(ADMIN).UpsertIdentityType(
        pb.UpsertIdentityTypeRequest(
            identity_type=member_pb2.IdentityType(
                code="alipay_uid",
                kind=member_pb2.IDENTITY_KIND_TOKEN,
                pattern=r"2088[0-9]{12}",
                description="Alipay user id",
            )
        )
    )
    request = pb.RegisterMemberRequest(
        request_id=rid(),
        unit="cinema",
        identities=[member_pb2.Identity(type="alipay_uid", value="2088123412341234")],
    )
    assert (await identity.as_(CINEMA_POS).RegisterMember(request)).created
    bad = pb.UpsertIdentityTypeRequest(
        identity_type=member_pb2.IdentityType(code="X", kind=member_pb2.IDENTITY_KIND_TOKEN)
    )
    failure = await fails(identity.as_(ADMIN).UpsertIdentityType(bad))
    assert failure.fields == ["identity_type.code", "identity_type.pattern"]
    # A unit's legacy numbers (the type a member import makes) can be described by an admin.
    legacy = member_pb2.IdentityType(
        code="legacy:bowling", kind=member_pb2.IDENTITY_KIND_TOKEN, pattern=r"[0-9]{6,12}"
    )
    legacy.description = "the bowling alley's card numbers"
    await identity.as_(ADMIN).UpsertIdentityType(pb.UpsertIdentityTypeRequest(identity_type=legacy))
    # Any unit code makes one, a hyphen in it too (the unit `hot-spring`: `legacy:hot-spring`).
    spring = member_pb2.IdentityType(
        code="legacy:hot-spring", kind=member_pb2.IDENTITY_KIND_TOKEN, pattern=r"HS[0-9]{6}"
    )
    await identity.as_(ADMIN).UpsertIdentityType(pb.UpsertIdentityTypeRequest(identity_type=spring))
    listed = await identity.as_(ADMIN).ListIdentityTypes(pb.ListIdentityTypesRequest())
    assert legacy in list(listed.identity_types) and spring in list(listed.identity_types)
    bad_codes = ["legacy:", "legacy:B", "legacy:x:y", "other:mall", "legacy:a", "legacy:-mall"]
    bad_codes += ["hot-spring", "legacy:" + "m" * 33, "legacy:mall:1", "legacy:legacy:mall"]
    for code in bad_codes:
        wrong = member_pb2.IdentityType(code=code, kind=member_pb2.IDENTITY_KIND_TOKEN, pattern="1")
        failure = await fails(
            identity.as_(ADMIN).UpsertIdentityType(
                pb.UpsertIdentityTypeRequest(identity_type=wrong)
            )
        )
        assert failure.fields == ["identity_type.code"], code


async def test_members_are_registered_only_at_a_unit_of_the_programme(
    identity: IdentityClient, settings: Settings
) -> None:
    """Identity learns the units from the programme the points service publishes; an admin may
    act for any unit, but not for one the programme does not have."""
    units = ["cinema", "estate", "hotel", "mall"]
    await publish(settings, "points", points_events.ProgrammePublished(version=1, units=units))

    async def learned() -> set[str]:
        async with identity.service.context.uow() as uow:
            rows = await uow.session.execute(text("SELECT unit FROM programme_units"))
            return {row[0] for row in rows}

    for _ in range(600):
        if set(units) <= await learned():
            break
        await asyncio.sleep(0.05)
    assert set(units) <= await learned()
    casino = register(phone())
    casino.unit = "casino"
    failure = await fails(identity.as_(ADMIN).RegisterMember(casino))
    assert (failure.code, failure.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_UNIT")
    assert failure.fields == ["unit"]
    estate = register(phone())
    estate.unit = "estate"
    assert (await identity.as_(ADMIN).RegisterMember(estate)).created
