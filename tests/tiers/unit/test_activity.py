"""Activity from points postings, and the upgrade it brings at once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from loyalty_tiers.domain.ladder import Metric
from loyalty_tiers.domain.member_tier import HistoryEntry
from loyalty_tiers.service_layer.identity_events import on_member_merged
from loyalty_tiers.service_layer.ladders import publish_ladder
from loyalty_tiers.service_layer.queries import history

from tests.tiers.ladders import huayue
from tests.tiers.unit.conftest import ANN, BOB, T0, Tiers


async def test_activity_below_the_first_threshold_places_the_member_at_the_entry_tier(
    tiers: Tiers,
) -> None:
    await tiers.earn(ANN, 1_000)

    assert tiers.member(ANN).tier == "basic"
    assert tiers.member(ANN).tier_year_end is None
    assert tiers.events == []


async def test_crossing_a_threshold_upgrades_at_once_and_starts_a_tier_year(tiers: Tiers) -> None:
    await tiers.earn(ANN, 3_000)
    await tiers.earn(ANN, 2_000)

    assert tiers.reasons(ANN) == [("basic", "silver", "qualified")]
    event = tiers.events[0]
    assert event.effective_at == T0
    assert event.tier_year_end == T0.replace(year=2027)
    assert event.grant_ends_at is None
    assert tiers.member(ANN).since == T0


async def test_hotel_and_mall_spend_together_reach_gold(tiers: Tiers) -> None:
    await tiers.earn(ANN, 12_000, unit="hotel")
    await tiers.earn(ANN, 8_000, unit="mall")

    assert tiers.reasons(ANN) == [("basic", "silver", "qualified"), ("silver", "gold", "qualified")]


async def test_a_big_purchase_jumps_straight_to_the_tier_it_supports(tiers: Tiers) -> None:
    await tiers.earn(ANN, 90_000)

    assert tiers.reasons(ANN) == [("basic", "platinum", "qualified")]


async def test_a_posting_delivered_twice_counts_once(tiers: Tiers) -> None:
    posting = await tiers.earn(ANN, 3_000)
    await tiers.earn(ANN, 3_000, posting=posting)

    assert tiers.member(ANN).tier == "basic"
    assert await tiers.store.counted(ANN, [posting]) == {posting}


async def test_a_refund_never_downgrades_on_the_spot(tiers: Tiers) -> None:
    await tiers.earn(ANN, 6_000)
    await tiers.earn(ANN, -6_000)

    assert tiers.member(ANN).tier == "silver"
    assert tiers.reasons(ANN) == [("basic", "silver", "qualified")]


async def test_a_refund_arriving_before_its_purchase_nets_out_the_same(tiers: Tiers) -> None:
    await tiers.earn(ANN, -4_000)
    await tiers.earn(ANN, 4_000)
    await tiers.earn(ANN, 4_000)

    assert tiers.member(ANN).tier == "basic"


async def test_activity_older_than_the_window_counts_for_nothing(tiers: Tiers) -> None:
    await tiers.earn(ANN, 4_000, at=T0 - timedelta(days=400))
    await tiers.earn(ANN, 4_000)

    assert tiers.member(ANN).tier == "basic"


async def test_late_activity_within_the_window_counts(tiers: Tiers) -> None:
    await tiers.earn(ANN, 4_000)
    await tiers.earn(ANN, 4_000, at=T0 - timedelta(days=200))

    assert tiers.member(ANN).tier == "silver"


async def test_without_a_ladder_activity_is_kept_and_counts_once_one_is_published() -> None:
    tiers = Tiers()
    await tiers.earn(ANN, 6_000)
    assert ANN not in tiers.store.tables.members

    await tiers(publish_ladder, huayue())
    await tiers.earn(ANN, 1)

    assert tiers.member(ANN).tier == "silver"


async def test_a_growth_value_ladder_weighs_the_hotel_double(tiers: Tiers) -> None:
    growth = huayue(growth_weights={"hotel": Decimal(2)})
    for rule in growth.tiers[1:]:
        rule.thresholds[Metric.GROWTH_VALUE] = rule.thresholds.pop(Metric.QUALIFYING_SPEND)
    await tiers(publish_ladder, growth)

    await tiers.earn(ANN, 2_500, unit="hotel")
    await tiers.earn(BOB, 2_500, unit="mall")

    assert tiers.member(ANN).tier == "silver"
    assert tiers.member(BOB).tier == "basic"


async def test_activity_of_an_absorbed_member_counts_for_the_survivor(tiers: Tiers) -> None:
    await tiers(on_member_merged, ANN, BOB, tiers.now)

    await tiers.earn(BOB, 6_000)

    assert tiers.member(ANN).tier == "silver"
    assert BOB not in tiers.store.tables.members
    assert [p.origin for p in tiers.store.tables.activity.values()] == [BOB]


async def test_an_upgrade_is_written_to_the_history(tiers: Tiers) -> None:
    await tiers.earn(ANN, 25_000)

    entries = await tiers(history, ANN, None, 10)

    assert [e for _, e in entries] == [HistoryEntry(ANN, "basic", "gold", "qualified", T0)]
