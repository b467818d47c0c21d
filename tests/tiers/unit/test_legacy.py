"""Imported members' legacy tiers become status matches, over the fake unit of work: until the
end the import gave (or the end of the next calendar year), once per legacy account, a tier
the ladder lacks skipped and counted, never an error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from loyalty_tiers.domain.errors import NoLadder
from loyalty_tiers.domain.grants import GrantState
from loyalty_tiers.domain.legacy import ImportedTiers, LegacyTier, end_of_next_year
from loyalty_tiers.service_layer.identity_events import on_member_erased, on_member_merged
from loyalty_tiers.service_layer.legacy import MatchedTiers, grant_legacy_tiers

from tests.tiers.unit.conftest import ANN, BOB, T0, Tiers

NEXT_YEAR_END = datetime(2028, 1, 1, tzinfo=UTC)  # T0 is in 2026; the ladder's zone is UTC


def legacy(member_id: str, tier: str, key: str = "", ends: datetime | None = None) -> LegacyTier:
    return LegacyTier(member_id, key or f"{member_id}-card", tier, ends)


async def imported(tiers: Tiers, *entries: LegacyTier, unit: str = "mall") -> MatchedTiers:
    chunk = ImportedTiers("memberImports/i-1", unit, tiers.now, entries)
    return await tiers(grant_legacy_tiers, chunk, tiers.now)


def grants_of(tiers: Tiers, member_id: str) -> list[tuple[str, str, str, datetime]]:
    return [
        (g.kind.value, g.tier, g.unit, g.ends_at)
        for g, _ in tiers.store.tables.grants.values()
        if g.member_id == member_id and g.state is GrantState.ACTIVE
    ]


async def test_a_legacy_tier_is_a_status_match_until_the_end_given(tiers: Tiers) -> None:
    ends = T0 + timedelta(days=200)
    done = await imported(tiers, legacy(ANN, "gold", ends=ends), legacy(BOB, "platinum"))

    assert done.granted == 2
    assert grants_of(tiers, ANN) == [("status_match", "gold", "mall", ends)]
    assert grants_of(tiers, BOB) == [("status_match", "platinum", "mall", NEXT_YEAR_END)]
    assert tiers.reasons() == [
        ("basic", "gold", "carried_over"),
        ("basic", "platinum", "carried_over"),
    ]
    assert tiers.events[0].grant_ends_at == ends
    assert tiers.member(ANN).tier == "basic"  # earned by activity: still the entry tier


def test_the_next_calendar_year_ends_in_the_ladders_time_zone() -> None:
    late = datetime(2026, 12, 31, 17, tzinfo=UTC)  # already 2027 in Shanghai
    assert end_of_next_year(late, "UTC") == datetime(2028, 1, 1, tzinfo=UTC)
    shanghai = end_of_next_year(late, "Asia/Shanghai")
    assert shanghai.isoformat() == "2029-01-01T00:00:00+08:00"


async def test_a_tier_not_on_the_ladder_is_skipped_and_counted(tiers: Tiers) -> None:
    done = await imported(
        tiers,
        legacy(ANN, "vip"),
        legacy(BOB, "basic"),  # the entry tier: nothing to match
        legacy("cy", "gold", ends=T0 - timedelta(days=1)),  # ended already
        legacy("di", "gold"),
    )

    assert done.granted == 1
    assert dict(done.skipped) == {"not_on_ladder": 1, "entry_tier": 1, "ended": 1}
    assert done.unknown_tiers == {"vip"}
    assert grants_of(tiers, ANN) == grants_of(tiers, BOB) == grants_of(tiers, "cy") == []
    assert [to for _, to, _ in tiers.reasons()] == ["gold"]


async def test_one_legacy_account_is_matched_once_whatever_brings_it(tiers: Tiers) -> None:
    await imported(tiers, legacy(ANN, "gold", "card-1"))
    again = await imported(tiers, legacy(ANN, "platinum", "card-1"))  # a second import
    other = await imported(tiers, legacy(BOB, "gold", "card-1"))  # joined to another member
    twice = await imported(tiers, legacy(BOB, "gold", "card-2"), legacy(BOB, "gold", "card-2"))

    assert (again.granted, again.granted_before) == (0, 1)
    assert (other.granted, other.granted_before) == (0, 1)
    assert twice.granted == 1
    assert [t for _, t, _, _ in grants_of(tiers, ANN)] == ["gold"]
    assert [t for _, t, _, _ in grants_of(tiers, BOB)] == ["gold"]
    # The same key at another unit is another legacy account.
    await imported(tiers, legacy(ANN, "platinum", "card-1"), unit="hotel")
    assert tiers.member(ANN).effective == "platinum"


async def test_a_tier_skipped_may_come_in_again_mapped(tiers: Tiers) -> None:
    await imported(tiers, legacy(ANN, "vip", "card-1"))
    done = await imported(tiers, legacy(ANN, "gold", "card-1"))  # the mapping corrected

    assert done.granted == 1
    assert tiers.member(ANN).effective == "gold"


async def test_a_merged_member_matches_its_survivor_and_an_erased_one_nothing(
    tiers: Tiers,
) -> None:
    await tiers.earn(ANN, 100)
    await tiers.earn(BOB, 100)
    await tiers(on_member_merged, BOB, ANN, tiers.now)  # ANN absorbed into BOB
    await tiers(on_member_erased, "cy", tiers.now)

    done = await imported(tiers, legacy(ANN, "gold"), legacy("cy", "gold"))

    assert (done.granted, dict(done.skipped)) == (1, {"no_member": 1})
    assert tiers.member(BOB).effective == "gold"
    assert grants_of(tiers, "cy") == []


async def test_without_a_ladder_the_chunk_waits_for_one() -> None:
    tiers = Tiers()  # no ladder published
    with pytest.raises(NoLadder):
        await imported(tiers, legacy(ANN, "gold"))
    assert await imported(tiers) == MatchedTiers()  # nothing to match needs no ladder
