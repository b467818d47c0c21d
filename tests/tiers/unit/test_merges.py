"""Merges, unmerges and erasure, as identity's events bring them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from loyalty_kit.errors import MemberNotActive
from loyalty_tiers.domain.grants import GrantKind
from loyalty_tiers.service_layer.grants import create_grant
from loyalty_tiers.service_layer.identity_events import (
    on_member_erased,
    on_member_merged,
    on_member_unmerged,
)
from loyalty_tiers.service_layer.queries import distribution, history, member_view

from tests.tiers.unit.conftest import ANN, BOB, T0, Tiers


async def test_the_survivor_keeps_the_higher_tier_and_its_tier_year(tiers: Tiers) -> None:
    await tiers.earn(ANN, 6_000)
    tiers.later(days=10)
    await tiers.earn(BOB, 25_000)

    await tiers(on_member_merged, ANN, BOB, tiers.later(days=1))

    survivor = tiers.member(ANN)
    assert (survivor.tier, survivor.since) == ("gold", T0 + timedelta(days=10))
    assert tiers.reasons(ANN)[-1] == ("silver", "gold", "merged")
    assert BOB not in tiers.store.tables.members


async def test_combined_activity_may_qualify_for_more_at_once(tiers: Tiers) -> None:
    await tiers.earn(ANN, 12_000)
    await tiers.earn(BOB, 12_000)

    await tiers(on_member_merged, ANN, BOB, tiers.now)

    assert tiers.reasons(ANN)[-1] == ("silver", "gold", "qualified")


async def test_the_absorbed_members_grants_count_for_the_survivor(tiers: Tiers) -> None:
    ends = T0 + timedelta(days=30)
    await tiers(create_grant, BOB, GrantKind.GIFT, "platinum", "gift", ends, tiers.now)

    await tiers(on_member_merged, ANN, BOB, tiers.now)

    assert tiers.reasons(ANN) == [("basic", "platinum", "merged")]
    assert tiers.events[-1].grant_ends_at == ends


async def test_an_absorbed_id_is_refused_naming_the_survivor(tiers: Tiers) -> None:
    await tiers(on_member_merged, ANN, BOB, tiers.now)

    for attempt in (
        lambda: tiers(member_view, BOB, tiers.now),
        lambda: tiers(history, BOB, None, 10),
        lambda: tiers(
            create_grant, BOB, GrantKind.GIFT, "gold", "gift", T0.replace(year=2027), tiers.now
        ),
    ):
        with pytest.raises(MemberNotActive) as refused:
            await attempt()
        assert refused.value.reason == "MEMBER_MERGED"
        assert refused.value.metadata["merged_into"] == ANN


async def test_an_unmerge_drops_the_survivor_at_once_and_announces_the_restored(
    tiers: Tiers,
) -> None:
    await tiers.earn(ANN, 6_000)
    await tiers.earn(BOB, 25_000)
    await tiers(on_member_merged, ANN, BOB, tiers.later(days=1))
    assert tiers.member(ANN).tier == "gold"

    await tiers(on_member_unmerged, ANN, BOB, tiers.later(days=1))

    assert (tiers.member(ANN).tier, tiers.member(BOB).tier) == ("silver", "gold")
    assert tiers.reasons(BOB)[-1] == ("gold", "gold", "unmerged")
    assert tiers.reasons(ANN)[-1] == ("gold", "silver", "unmerged")
    assert [e.member_id for e in tiers.events[-2:]] == [BOB, ANN]


async def test_an_unmerge_gives_back_activity_that_arrived_after_the_merge(tiers: Tiers) -> None:
    await tiers.earn(ANN, 10)
    await tiers(on_member_merged, ANN, BOB, tiers.now)
    await tiers.earn(BOB, 6_000)  # late: counted for the survivor
    assert tiers.member(ANN).tier == "silver"

    await tiers(on_member_unmerged, ANN, BOB, tiers.later(days=1))

    assert (tiers.member(ANN).tier, tiers.member(BOB).tier) == ("basic", "silver")


async def test_a_redelivered_unmerge_changes_nothing(tiers: Tiers) -> None:
    await tiers.earn(BOB, 6_000)
    await tiers(on_member_merged, ANN, BOB, tiers.now)
    await tiers(on_member_unmerged, ANN, BOB, tiers.now)
    events = len(tiers.events)

    await tiers(on_member_unmerged, ANN, BOB, tiers.now)

    assert len(tiers.events) == events


async def test_an_erased_member_keeps_its_tier_and_leaves_the_distribution(tiers: Tiers) -> None:
    await tiers.earn(ANN, 25_000)
    await tiers.earn(BOB, 6_000)

    await tiers(on_member_erased, ANN, tiers.now)
    await tiers(on_member_erased, ANN, tiers.now)  # redelivered

    assert tiers.member(ANN).tier == "gold"
    assert tiers.member(ANN).tier_year_end is None
    _, counts = await tiers(distribution)
    assert dict(counts) == {"basic": 0, "silver": 1, "gold": 0, "platinum": 0, "diamond": 0}
