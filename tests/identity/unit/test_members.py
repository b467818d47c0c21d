"""Profiles, consents, suspension, tags, listings, erasure and export."""

from __future__ import annotations

import json
from datetime import date

import pytest
from loyalty_identity.domain import events
from loyalty_identity.domain.errors import MemberNotSuspended, MemberSuspended
from loyalty_identity.domain.member import ConsentPurpose, Gender, MemberState, Profile
from loyalty_identity.service_layer import handlers
from loyalty_identity.service_layer.commands import ConsentGiven
from loyalty_kit.errors import FailedPrecondition, InvalidArgument

from tests.identity.unit.conftest import Identity, phone


async def test_only_the_fields_named_change_and_are_announced(identity: Identity) -> None:
    member = await identity.register(full_name="Li Wei")
    given = Profile(full_name="Someone Else", region="Shanghai", gender=Gender.FEMALE)

    updated = await identity(
        handlers.update_profile, member.member_id, given, ["region", "gender"], identity.later()
    )

    assert (updated.profile.full_name, updated.profile.region) == ("Li Wei", "Shanghai")
    assert identity.events[-1] == events.ProfileChanged(
        member.member_id, ("gender", "region"), None, identity.now
    )
    assert identity.row(member.member_id).updated_at == identity.now


async def test_a_time_zone_is_validated_kept_and_announced(identity: Identity) -> None:
    member = await identity.register()
    with pytest.raises(InvalidArgument) as refused:
        await identity(
            handlers.update_profile,
            member.member_id,
            Profile(time_zone="Mars/Olympus_Mons"),
            ["time_zone"],
            identity.later(),
        )
    assert [v.field for v in refused.value.field_violations] == ["profile.time_zone"]

    updated = await identity(
        handlers.update_profile,
        member.member_id,
        Profile(time_zone="Europe/Paris"),
        ["time_zone"],
        identity.later(),
    )

    assert updated.profile.time_zone == "Europe/Paris"
    assert identity.events[-1] == events.ProfileChanged(
        member.member_id, ("time_zone",), None, identity.now, "Europe/Paris"
    )


async def test_a_profile_update_that_changes_nothing_announces_nothing(identity: Identity) -> None:
    member = await identity.register(region="Beijing")
    before = len(identity.events)

    await identity(
        handlers.update_profile,
        member.member_id,
        Profile(region="Beijing"),
        ["region"],
        identity.now,
    )

    assert len(identity.events) == before


async def test_a_profile_update_names_unknown_fields_and_a_future_birthday(
    identity: Identity,
) -> None:
    member = await identity.register()

    with pytest.raises(InvalidArgument) as unknown:
        await identity(
            handlers.update_profile, member.member_id, Profile(), ["email"], identity.now
        )
    with pytest.raises(InvalidArgument) as future:
        await identity(
            handlers.update_profile,
            member.member_id,
            Profile(birthday=date(2999, 1, 1)),
            ["birthday"],
            identity.now,
        )

    assert [v.field for v in unknown.value.field_violations] == ["update_mask.paths[0]"]
    assert [v.field for v in future.value.field_violations] == ["profile.birthday"]


async def test_consents_are_kept_announced_and_listed_newest_first(identity: Identity) -> None:
    member = await identity.register()
    changes = [
        ConsentGiven(ConsentPurpose.MARKETING_SMS, False),
        ConsentGiven(ConsentPurpose.PARTNER_SHARING, True),
    ]

    updated = await identity(
        handlers.set_consents, member.member_id, changes, "app:privacy", identity.later()
    )
    history = await identity(handlers.consent_history, member.member_id, None, 10)

    assert not updated.consents[ConsentPurpose.MARKETING_SMS].granted
    assert identity.kinds()[-2:] == ["ConsentChanged", "ConsentChanged"]
    assert [(c.purpose, c.granted) for _, c in history] == [
        (ConsentPurpose.PARTNER_SHARING, True),
        (ConsentPurpose.MARKETING_SMS, False),
        (ConsentPurpose.MARKETING_SMS, True),
    ]


async def test_a_consent_given_twice_in_one_request_is_refused(identity: Identity) -> None:
    member = await identity.register()
    twice = [ConsentGiven(ConsentPurpose.MARKETING_SMS, True)] * 2

    with pytest.raises(InvalidArgument):
        await identity(handlers.set_consents, member.member_id, twice, "app", identity.now)


async def test_suspension_and_reactivation_are_announced_and_checked(identity: Identity) -> None:
    member = await identity.register()

    suspended = await identity(handlers.suspend, member.member_id, " fraud check ", identity.now)
    with pytest.raises(MemberSuspended):
        await identity(handlers.suspend, member.member_id, "again", identity.now)
    await identity(handlers.reactivate, member.member_id, "", identity.later(hours=1))
    with pytest.raises(MemberNotSuspended):
        await identity(handlers.reactivate, member.member_id, "", identity.now)

    assert suspended.suspension_reason == "fraud check"
    assert identity.kinds()[-2:] == ["MemberSuspended", "MemberReactivated"]
    assert identity.row(member.member_id).state is MemberState.ACTIVE


async def test_a_suspension_needs_a_reason(identity: Identity) -> None:
    member = await identity.register()

    with pytest.raises(InvalidArgument):
        await identity(handlers.suspend, member.member_id, "  ", identity.now)


async def test_tags_are_added_and_removed_and_at_most_200_are_kept(identity: Identity) -> None:
    member = await identity.register()

    tagged = await identity(
        handlers.update_tags, member.member_id, ["bu:mall", "rfm:champion"], [], identity.now
    )
    untagged = await identity(
        handlers.update_tags, member.member_id, [], ["rfm:champion"], identity.now
    )
    too_many = [f"t:n{i}" for i in range(200)]
    with pytest.raises(FailedPrecondition) as raised:
        await identity(handlers.update_tags, member.member_id, too_many, [], identity.now)

    assert tagged.tags == {"bu:mall", "rfm:champion"}
    assert untagged.tags == {"bu:mall"}
    assert raised.value.reason == "TOO_MANY_TAGS"
    assert identity.row(member.member_id).tags == {"bu:mall"}  # the refused change rolled back


async def test_a_tag_change_is_announced_with_the_tags_now_and_what_changed(
    identity: Identity,
) -> None:
    member = await identity.register()

    await identity(
        handlers.update_tags, member.member_id, ["bu:mall", "rfm:champion"], [], identity.now
    )
    await identity(
        handlers.update_tags,
        member.member_id,
        ["bu:hotel"],
        ["rfm:champion", "t:absent"],
        identity.now,
    )
    await identity(handlers.update_tags, member.member_id, ["bu:hotel"], [], identity.now)

    changes = [e for e in identity.events if isinstance(e, events.MemberTagsChanged)]
    assert [(c.tags, c.added_tags, c.removed_tags) for c in changes] == [
        (("bu:mall", "rfm:champion"), ("bu:mall", "rfm:champion"), ()),
        (("bu:hotel", "bu:mall"), ("bu:hotel",), ("rfm:champion",)),
    ]  # the last change changed nothing: not announced
    assert all(c.member_id == member.member_id and c.occurred_at == identity.now for c in changes)


async def test_a_malformed_tag_is_refused(identity: Identity) -> None:
    member = await identity.register()

    with pytest.raises(InvalidArgument) as raised:
        await identity(handlers.update_tags, member.member_id, ["no-namespace"], [], identity.now)

    assert [v.field for v in raised.value.field_violations] == ["add_tags[0]"]


async def test_listings_page_through_members_and_count_them_on_the_first_page(
    identity: Identity,
) -> None:
    ids = sorted([(await identity.register()).member_id for _ in range(5)])
    for member_id in ids[:3]:
        await identity(handlers.update_tags, member_id, ["seg:vip"], [], identity.now)

    first, after, total = await identity(handlers.list_member_ids, "", None, 2)
    second, after2, total2 = await identity(handlers.list_member_ids, "", after, 2)
    tagged, end, tagged_total = await identity(handlers.list_member_ids, "seg:vip", None, 10)

    assert (first, after, total) == (ids[:2], ids[1], 5)
    assert (second, after2, total2) == (ids[2:4], ids[3], 0)
    assert (tagged, end, tagged_total) == (ids[:3], None, 3)


async def test_an_erased_member_is_a_tombstone_and_its_phone_is_free_again(
    identity: Identity,
) -> None:
    member = await identity.register(phone("13812345678"), full_name="Li Wei")

    erased = await identity(handlers.erase, member.member_id, identity.later())
    again = await identity(handlers.erase, member.member_id, identity.later())
    newcomer = await identity.register(phone("13812345678"))

    assert erased.state is MemberState.ERASED
    assert (erased.identities, erased.profile, erased.tags) == ([], Profile(), set())
    assert again.state is MemberState.ERASED
    assert identity.kinds().count("MemberErased") == 1
    assert newcomer.member_id != member.member_id


async def test_the_export_holds_identities_profile_and_consent_history(identity: Identity) -> None:
    member = await identity.register(phone("13812345678"), full_name="Li Wei")
    await identity(
        handlers.set_consents,
        member.member_id,
        [ConsentGiven(ConsentPurpose.MARKETING_SMS, False)],
        "app",
        identity.now,
    )

    document = json.loads(await identity(handlers.export, member.member_id))

    assert document["identities"][0]["value"] == "+8613812345678"
    assert document["profile"]["full_name"] == "Li Wei"
    assert [c["granted"] for c in document["consent_history"]] == [False, True]
    assert document["consents"] == [
        {
            "purpose": "marketing_sms",
            "granted": False,
            "source": "app",
            "at": document["consents"][0]["at"],
        }
    ]
