"""Registering, resolving, linking and unlinking identities."""

from __future__ import annotations

from datetime import date

import pytest
from loyalty_identity.domain import events
from loyalty_identity.domain.errors import (
    IdentityAlreadyBound,
    IdentityNotLinked,
    LastIdentity,
    NoMemberWithIdentity,
)
from loyalty_identity.domain.identities import IdentityKind, IdentityType
from loyalty_identity.domain.member import ConsentPurpose, MemberState, Profile
from loyalty_identity.service_layer import handlers
from loyalty_identity.service_layer.commands import ConsentGiven, RawIdentity, Register
from loyalty_kit.errors import InvalidArgument

from tests.identity.unit.conftest import T0, Identity, phone


async def test_a_new_member_is_active_and_announced_with_its_consents_and_profile(
    identity: Identity,
) -> None:
    member = await identity.register(full_name="Li Wei", birthday=date(1990, 5, 17))

    assert member.state is MemberState.ACTIVE
    assert identity.kinds() == ["MemberRegistered", "ConsentChanged", "ProfileChanged"]
    registered, consent, profile = identity.events
    assert registered == events.MemberRegistered(member.member_id, "mall", "CHANNEL_POS", T0)
    assert consent == events.ConsentChanged(
        member.member_id, ConsentPurpose.MARKETING_SMS, True, "mall:CHANNEL_POS", T0
    )
    assert isinstance(profile, events.ProfileChanged)
    assert profile.changed_fields == ("full_name", "birthday")
    assert profile.birthday == date(1990, 5, 17)


async def test_a_member_registered_without_a_profile_announces_no_profile_change(
    identity: Identity,
) -> None:
    await identity.register()

    assert identity.kinds() == ["MemberRegistered", "ConsentChanged"]


async def test_registering_a_known_phone_again_answers_the_member_it_belongs_to(
    identity: Identity,
) -> None:
    first = await identity.register(phone("13812345678"))

    done = await identity(
        handlers.register,
        Register([phone("+86 138 1234 5678")], "hotel", "CHANNEL_APP"),
        identity.now,
    )

    assert (done.member.member_id, done.created) == (first.member_id, False)
    assert done.already_bound_types == ["phone"]
    assert identity.kinds().count("MemberRegistered") == 1


async def test_identities_of_two_members_cannot_register_together(identity: Identity) -> None:
    await identity.register(phone("13812345678"))
    await identity.register(RawIdentity("email", "wei@example.com"))

    with pytest.raises(IdentityAlreadyBound):
        await identity(
            handlers.register,
            Register([phone("13812345678"), RawIdentity("email", "Wei@Example.com")], "mall", ""),
            identity.now,
        )


async def test_every_problem_of_a_registration_is_named_at_once(identity: Identity) -> None:
    command = Register(
        identities=[RawIdentity("fax", "123"), phone("not a phone")],
        unit="Mall!",
        channel="CHANNEL_POS",
        consents=[ConsentGiven(None, True)],
    )

    with pytest.raises(InvalidArgument) as raised:
        await identity(handlers.register, command, identity.now)

    fields = {v.field for v in raised.value.field_violations}
    assert fields == {"unit", "identities[0].type", "identities[1].value", "consents[0].purpose"}
    assert identity.events == []


async def test_unknown_identity_types_are_answered_briefly_however_many_types_exist(
    identity: Identity,
) -> None:
    for n in range(3000):
        code = f"t_{n:09d}"
        identity.store.tables.types[code] = IdentityType(code, IdentityKind.TOKEN, r"\d{6}")
    given = [RawIdentity(f"zz{n}", "123456") for n in range(999)] + [RawIdentity("y" * 10**5, "1")]
    command = Register(given, "mall", "")

    with pytest.raises(InvalidArgument) as raised:
        await identity(handlers.register, command, identity.now)

    violations = raised.value.field_violations
    assert len(violations) == 1000
    # A few known types, and a long type cut short: not 3,000 codes in each of 1,000
    # violations (130 MB of text held at once).
    assert max(len(v.description) for v in violations) < 300
    assert violations[0].description == (
        "unknown identity type 'zz0'; known: email, phone, store_card, t_000000000, "
        "t_000000001, t_000000002, t_000000003, t_000000004, t_000000005, t_000000006 "
        "and 2993 more (ListIdentityTypes names them)"
    )


async def test_a_unit_the_programme_does_not_name_is_refused_once_a_programme_is_known(
    identity: Identity,
) -> None:
    await identity.register(unit="cinema")  # no programme yet: any well-formed unit
    await identity(handlers.learn_programme, ["mall", "hotel"], 1, identity.now)

    with pytest.raises(InvalidArgument) as raised:
        await identity.register(unit="cinema")

    assert raised.value.reason == "UNKNOWN_UNIT"


async def test_resolve_finds_the_member_by_any_spelling_of_its_phone(identity: Identity) -> None:
    member = await identity.register(phone("13812345678"))

    found = await identity(handlers.resolve, phone("+8613812345678"))

    assert found.member_id == member.member_id
    with pytest.raises(NoMemberWithIdentity):
        await identity(handlers.resolve, phone("13900000000"))


async def test_an_identity_type_added_at_run_time_is_usable_at_once(identity: Identity) -> None:
    await identity(
        handlers.upsert_identity_type,
        IdentityType("wechat_openid", IdentityKind.TOKEN, r"o[A-Za-z0-9_-]{20,40}"),
    )

    member = await identity.register(RawIdentity("wechat_openid", "o" + "x" * 27))

    assert [i.identity.type for i in member.identities] == ["wechat_openid"]


async def test_an_identity_type_keeps_its_pattern_and_description_short(
    identity: Identity,
) -> None:
    long = IdentityType("loyalty_card", IdentityKind.TOKEN, "[0-9]" * 100, "x" * 201)

    with pytest.raises(InvalidArgument) as raised:
        await identity(handlers.upsert_identity_type, long)

    assert [v.field for v in raised.value.field_violations] == [
        "identity_type.description",
        "identity_type.pattern",
    ]


async def test_a_value_not_matching_its_type_is_answered_briefly_whatever_the_description(
    identity: Identity,
) -> None:
    # A type stored before descriptions were kept short: the answer repeats it for each
    # value that does not match, so it is cut there too.
    card = IdentityType("loyalty_card", IdentityKind.TOKEN, r"\d{6}", "6 digits " * 100_000)
    identity.store.tables.types[card.code] = card
    given = [RawIdentity("loyalty_card", f"bad{n}") for n in range(1000)]

    with pytest.raises(InvalidArgument) as raised:
        await identity(handlers.register, Register(given, "mall", ""), identity.now)

    assert len(raised.value.field_violations) == 1000
    assert max(len(v.description) for v in raised.value.field_violations) < 300


async def test_linking_an_identity_of_another_member_is_refused(identity: Identity) -> None:
    ann = await identity.register(phone("13812345678"))
    bob = await identity.register()

    with pytest.raises(IdentityAlreadyBound):
        await identity(handlers.link, bob.member_id, phone("13812345678"), identity.now)
    again = await identity(handlers.link, ann.member_id, phone("13812345678"), identity.now)

    assert len(again.identities) == 1


async def test_a_linked_email_resolves_to_the_member(identity: Identity) -> None:
    member = await identity.register()

    await identity(
        handlers.link, member.member_id, RawIdentity("email", "Wei@Example.com"), identity.now
    )

    found = await identity(handlers.resolve, RawIdentity("email", "wei@example.com"))
    assert found.member_id == member.member_id


async def test_the_last_identity_cannot_be_unlinked(identity: Identity) -> None:
    member = await identity.register(phone("13812345678"))

    with pytest.raises(LastIdentity):
        await identity(handlers.unlink, member.member_id, phone("13812345678"))
    with pytest.raises(IdentityNotLinked):
        await identity(handlers.unlink, member.member_id, phone("13900000000"))


async def test_an_unlinked_identity_is_free_for_another_member(identity: Identity) -> None:
    member = await identity.register(phone("13812345678"), RawIdentity("email", "a@b.cn"))

    await identity(handlers.unlink, member.member_id, phone("13812345678"))
    other = await identity.register(phone("13812345678"))

    assert other.member_id != member.member_id
    assert [i.identity.type for i in identity.row(member.member_id).identities] == ["email"]


def test_the_profile_default_is_empty() -> None:
    assert Profile().changed_fields(Profile()) == []
