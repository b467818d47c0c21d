"""Protobuf <-> domain, and masking for callers without the personal-data scope."""

from __future__ import annotations

from datetime import date

from google.type import date_pb2
from loyalty.common.v1 import channel_pb2
from loyalty.identity.v1 import member_pb2
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.resources import MEMBERS
from loyalty_kit.resources import member_id_of as member_id_of
from loyalty_kit.timestamps import timestamp as _ts

from loyalty_identity.domain import masking
from loyalty_identity.domain.identities import IdentityKind, IdentityType
from loyalty_identity.domain.member import (
    Consent,
    ConsentPurpose,
    Gender,
    Member,
    MemberState,
    Profile,
)
from loyalty_identity.service_layer.commands import ConsentGiven, RawIdentity

RESOURCE = MEMBERS

_STATES = {
    MemberState.ACTIVE: member_pb2.MEMBER_STATE_ACTIVE,
    MemberState.SUSPENDED: member_pb2.MEMBER_STATE_SUSPENDED,
    MemberState.MERGED: member_pb2.MEMBER_STATE_MERGED,
    MemberState.ERASED: member_pb2.MEMBER_STATE_ERASED,
}
_GENDERS = {
    Gender.UNSPECIFIED: member_pb2.GENDER_UNSPECIFIED,
    Gender.FEMALE: member_pb2.GENDER_FEMALE,
    Gender.MALE: member_pb2.GENDER_MALE,
    Gender.OTHER: member_pb2.GENDER_OTHER,
}
_PURPOSES = {
    ConsentPurpose.MARKETING_SMS: member_pb2.CONSENT_PURPOSE_MARKETING_SMS,
    ConsentPurpose.MARKETING_PUSH: member_pb2.CONSENT_PURPOSE_MARKETING_PUSH,
    ConsentPurpose.PERSONALISED_OFFERS: member_pb2.CONSENT_PURPOSE_PERSONALISED_OFFERS,
    ConsentPurpose.PARTNER_SHARING: member_pb2.CONSENT_PURPOSE_PARTNER_SHARING,
}
_KINDS = {
    IdentityKind.PHONE: member_pb2.IDENTITY_KIND_PHONE,
    IdentityKind.EMAIL: member_pb2.IDENTITY_KIND_EMAIL,
    IdentityKind.TOKEN: member_pb2.IDENTITY_KIND_TOKEN,
}


# --- requests -----------------------------------------------------------------------------------
def raw_identity(identity: member_pb2.Identity) -> RawIdentity:
    return RawIdentity(identity.type.strip().lower(), identity.value)


def profile_from(profile: member_pb2.Profile, field: str = "profile") -> Profile:
    birthday: date | None = None
    if profile.HasField("birthday"):
        b = profile.birthday
        try:
            birthday = date(b.year, b.month, b.day)
        except ValueError:
            raise InvalidArgument.of(
                [FieldViolation(f"{field}.birthday", "not a calendar date (year, month, day)")]
            ) from None
    gender = next((g for g, v in _GENDERS.items() if v == profile.gender), None)
    if gender is None:
        raise InvalidArgument.of([FieldViolation(f"{field}.gender", "unknown gender value")])
    return Profile(
        full_name=profile.full_name.strip(),
        gender=gender,
        birthday=birthday,
        region=profile.region.strip(),
        preferred_language=profile.preferred_language.strip(),
        time_zone=profile.time_zone.strip(),
    )


def consents_from(changes: list[member_pb2.ConsentChange]) -> list[ConsentGiven]:
    by_value = {v: p for p, v in _PURPOSES.items()}
    return [ConsentGiven(by_value.get(c.purpose), c.granted) for c in changes]


def channel_name(channel: channel_pb2.Channel.ValueType, field: str = "channel") -> str:
    try:
        return str(channel_pb2.Channel.Name(channel))
    except ValueError:
        raise InvalidArgument.of([FieldViolation(field, "unknown channel")]) from None


def identity_type_from(message: member_pb2.IdentityType) -> IdentityType:
    kind = next((k for k, v in _KINDS.items() if v == message.kind), None)
    if kind is None:
        raise InvalidArgument.of([FieldViolation("identity_type.kind", "PHONE, EMAIL or TOKEN")])
    return IdentityType(message.code.strip(), kind, message.pattern, message.description.strip())


# --- responses ----------------------------------------------------------------------------------
def member_message(
    member: Member, *, personal_data: bool, kinds: dict[str, IdentityKind]
) -> member_pb2.Member:
    masked = not personal_data
    message = member_pb2.Member(
        name=f"{RESOURCE}{member.member_id}",
        member_id=member.member_id,
        state=_STATES[member.state],
        merged_into=member.merged_into,
        registered_unit=member.registered_unit,
        registered_channel=channel_pb2.Channel.Value(member.registered_channel),
        suspension_reason=member.suspension_reason,
        create_time=_ts(member.created_at),
        update_time=_ts(member.updated_at),
        tags=sorted(member.tags),
        personal_data_masked=masked,
    )
    for linked in member.identities:
        kind = kinds.get(linked.identity.type, IdentityKind.TOKEN)
        value = linked.identity.value
        message.identities.append(
            member_pb2.Identity(
                type=linked.identity.type,
                value=masking.mask_identity(kind.value, value) if masked else value,
                link_time=_ts(linked.linked_at),
            )
        )
    profile = member.profile
    message.profile.CopyFrom(
        member_pb2.Profile(
            full_name=masking.mask_name(profile.full_name) if masked else profile.full_name,
            gender=_GENDERS[profile.gender],
            region=profile.region,
            preferred_language=profile.preferred_language,
            time_zone=profile.time_zone,
        )
    )
    if profile.birthday is not None and not masked:
        message.profile.birthday.CopyFrom(
            date_pb2.Date(
                year=profile.birthday.year, month=profile.birthday.month, day=profile.birthday.day
            )
        )
    for consent in sorted(member.consents.values(), key=lambda c: c.purpose.value):
        message.consents.append(consent_message(consent))
    return message


def consent_message(consent: Consent) -> member_pb2.Consent:
    return member_pb2.Consent(
        purpose=_PURPOSES[consent.purpose],
        granted=consent.granted,
        source=consent.source,
        update_time=_ts(consent.changed_at),
    )


def purpose_value(purpose: ConsentPurpose) -> member_pb2.ConsentPurpose.ValueType:
    return _PURPOSES[purpose]


def identity_type_message(identity_type: IdentityType) -> member_pb2.IdentityType:
    return member_pb2.IdentityType(
        code=identity_type.code,
        kind=_KINDS[identity_type.kind],
        pattern=identity_type.pattern,
        description=identity_type.description,
    )
