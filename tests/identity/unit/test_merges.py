"""Merging two members into one, and undoing it."""

from __future__ import annotations

import pytest
from loyalty_identity.domain import events
from loyalty_identity.domain.errors import (
    CannotMergeIntoItself,
    LastIdentity,
    MemberMerged,
    MemberSuspended,
)
from loyalty_identity.domain.member import ConsentPurpose, MemberState, Profile
from loyalty_identity.service_layer import handlers
from loyalty_identity.service_layer.commands import ConsentGiven, RawIdentity
from loyalty_kit.errors import InvalidArgument

from tests.identity.unit.conftest import DESK, Identity, phone


async def test_a_merge_moves_identities_and_fills_the_survivors_gaps(identity: Identity) -> None:
    survivor = await identity.register(phone("13812345678"), full_name="Li Wei")
    absorbed = await identity.register(RawIdentity("email", "wei@example.com"), region="Shanghai")
    at = identity.later(days=1)

    merged = await identity(
        handlers.merge, survivor.member_id, absorbed.member_id, at, DESK, " duplicate "
    )

    assert {i.identity.type for i in merged.identities} == {"phone", "email"}
    assert (merged.profile.full_name, merged.profile.region) == ("Li Wei", "Shanghai")
    row = identity.row(absorbed.member_id)
    assert (row.state, row.merged_into, row.identities) == (
        MemberState.MERGED,
        survivor.member_id,
        [],
    )
    assert identity.events[-2:] == [
        events.MemberMerged(survivor.member_id, absorbed.member_id, at),
        events.ProfileChanged(survivor.member_id, ("region",), None, at),
    ]
    (audit,) = identity.store.tables.audit
    assert (audit["action"], audit["reason"], audit["detail"]) == (
        "merge",
        "duplicate",
        {"identity_types": ["email"]},
    )


async def test_a_merge_gives_the_survivor_the_absorbed_members_tags_and_says_so(
    identity: Identity,
) -> None:
    survivor, absorbed = await identity.register(), await identity.register()
    await identity(handlers.update_tags, survivor.member_id, ["bu:mall"], [], identity.now)
    await identity(
        handlers.update_tags, absorbed.member_id, ["bu:hotel", "bu:mall"], [], identity.now
    )
    at = identity.later(days=1)

    merged = await identity(handlers.merge, survivor.member_id, absorbed.member_id, at)

    assert merged.tags == {"bu:hotel", "bu:mall"}
    assert (
        events.MemberTagsChanged(survivor.member_id, ("bu:hotel", "bu:mall"), ("bu:hotel",), (), at)
        in identity.events
    )


async def test_merging_again_changes_nothing_and_announces_nothing(identity: Identity) -> None:
    survivor, absorbed = await identity.register(), await identity.register()
    await identity(handlers.merge, survivor.member_id, absorbed.member_id, identity.now)
    before = len(identity.events)

    again = await identity(handlers.merge, survivor.member_id, absorbed.member_id, identity.now)

    assert again.member_id == survivor.member_id
    assert len(identity.events) == before


async def test_a_member_cannot_absorb_itself_nor_a_suspended_member(identity: Identity) -> None:
    survivor, other = await identity.register(), await identity.register()
    await identity(handlers.suspend, other.member_id, "check", identity.now)

    with pytest.raises(CannotMergeIntoItself):
        await identity(handlers.merge, survivor.member_id, survivor.member_id, identity.now)
    with pytest.raises(MemberSuspended):
        await identity(handlers.merge, survivor.member_id, other.member_id, identity.now)


async def test_a_merged_member_only_answers_reads(identity: Identity) -> None:
    survivor, absorbed = await identity.register(), await identity.register()
    await identity(handlers.merge, survivor.member_id, absorbed.member_id, identity.now)

    with pytest.raises(MemberMerged):
        await identity(
            handlers.update_profile, absorbed.member_id, Profile(), ["region"], identity.now
        )
    read = await identity(handlers.get_member, absorbed.member_id)
    assert read.merged_into == survivor.member_id


async def test_members_merged_into_an_absorbed_member_point_at_the_new_survivor(
    identity: Identity,
) -> None:
    first, second, third = [await identity.register() for _ in range(3)]
    await identity(handlers.merge, second.member_id, first.member_id, identity.now)

    await identity(handlers.merge, third.member_id, second.member_id, identity.now)

    assert identity.row(first.member_id).merged_into == third.member_id


async def test_the_survivor_takes_only_the_consents_it_lacks_without_announcing_them(
    identity: Identity,
) -> None:
    survivor, absorbed = await identity.register(), await identity.register()
    await identity(
        handlers.set_consents,
        absorbed.member_id,
        [ConsentGiven(ConsentPurpose.PARTNER_SHARING, True)],
        "app",
        identity.now,
    )
    before = len(identity.events)

    merged = await identity(handlers.merge, survivor.member_id, absorbed.member_id, identity.now)

    assert set(merged.consents) == {ConsentPurpose.MARKETING_SMS, ConsentPurpose.PARTNER_SHARING}
    assert merged.consents[ConsentPurpose.MARKETING_SMS].source == "mall:CHANNEL_POS"
    assert [type(e).__name__ for e in identity.events[before:]] == ["MemberMerged"]


async def test_an_unmerge_gives_the_named_identities_back_and_audits_both(
    identity: Identity,
) -> None:
    survivor = await identity.register(phone("13812345678"))
    restored = await identity.register(RawIdentity("email", "wei@example.com"))
    merged_at = identity.later(days=1)
    await identity(handlers.merge, survivor.member_id, restored.member_id, merged_at)
    at = identity.later(days=2)

    done = await identity(
        handlers.unmerge,
        survivor.member_id,
        restored.member_id,
        [RawIdentity("email", "WEI@example.com")],
        "wrong merge",
        DESK,
        at,
    )

    assert done.restored.state is MemberState.ACTIVE
    assert [i.identity.type for i in done.restored.identities] == ["email"]
    assert [i.identity.type for i in done.survivor.identities] == ["phone"]
    assert identity.events[-1] == events.MemberUnmerged(
        survivor.member_id, restored.member_id, merged_at, at
    )
    assert [a["action"] for a in identity.store.tables.audit] == ["unmerge", "unmerge"]
    found = await identity(handlers.resolve, RawIdentity("email", "wei@example.com"))
    assert found.member_id == restored.member_id


async def test_an_unmerge_needs_a_reason_and_leaves_the_survivor_an_identity(
    identity: Identity,
) -> None:
    survivor = await identity.register(phone("13812345678"))
    restored = await identity.register(RawIdentity("email", "wei@example.com"))
    await identity(handlers.merge, survivor.member_id, restored.member_id, identity.now)
    everything = [phone("13812345678"), RawIdentity("email", "wei@example.com")]

    with pytest.raises(InvalidArgument):
        await identity(
            handlers.unmerge,
            survivor.member_id,
            restored.member_id,
            everything[1:],
            " ",
            DESK,
            identity.now,
        )
    with pytest.raises(LastIdentity):
        await identity(
            handlers.unmerge,
            survivor.member_id,
            restored.member_id,
            everything,
            "wrong merge",
            DESK,
            identity.now,
        )
    assert identity.row(restored.member_id).state is MemberState.MERGED
