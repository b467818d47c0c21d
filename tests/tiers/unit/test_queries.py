"""What members and the group see: tier and progress, a dry run, the ladder."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from loyalty_kit.errors import InvalidArgument
from loyalty_tiers.domain.ladder import Metric, Totals
from loyalty_tiers.service_layer.ladders import ladder, publish_ladder
from loyalty_tiers.service_layer.queries import ExtraActivity, member_view, preview

from tests.tiers.ladders import SPEND, huayue
from tests.tiers.unit.conftest import ANN, T0, Tiers


async def test_a_member_never_seen_is_at_the_entry_tier_with_progress_to_the_first(
    tiers: Tiers,
) -> None:
    view = await tiers(member_view, ANN, tiers.now)

    assert (view.tier, view.member.tier, view.next_tier) == ("basic", "basic", "silver")
    assert view.progress == [(SPEND, Decimal(0), Decimal(5_000))]
    assert view.retention == []
    assert view.currency == "CNY"


async def test_progress_counts_the_window_and_retention_the_tier_year(tiers: Tiers) -> None:
    await tiers.earn(ANN, 6_000)
    await tiers.earn(ANN, 1_000, at=T0 + timedelta(days=5))

    view = await tiers(member_view, ANN, tiers.later(days=10))

    assert view.progress == [(SPEND, Decimal(7_000), Decimal(20_000))]
    assert view.retention == [(SPEND, Decimal(1_000), Decimal(2_500))]


def extra(spend: int, posting: str = "", when: datetime | None = None) -> ExtraActivity:
    return ("hotel", Totals(Decimal(spend), spend, 1), posting, when)


async def test_a_preview_shows_the_upgrade_and_stores_nothing(tiers: Tiers) -> None:
    await tiers.earn(ANN, 3_000)

    found = await tiers(preview, ANN, [extra(3_000)], tiers.now)

    assert (found.tier, found.upgrade, found.next_tier) == ("silver", True, "gold")
    assert tiers.member(ANN).tier == "basic"


async def test_a_preview_adds_no_posting_twice_and_nothing_outside_the_window(
    tiers: Tiers,
) -> None:
    counted = await tiers.earn(ANN, 3_000)
    old = T0 - timedelta(days=400)

    found = await tiers(preview, ANN, [extra(3_000, counted), extra(3_000, "p-old", old)], T0)

    assert (found.tier, found.upgrade) == ("basic", False)


async def test_a_preview_refuses_spend_with_more_digits_than_the_currency(tiers: Tiers) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await tiers(preview, ANN, [("hotel", Totals(Decimal("1.001")), "", None)], T0)

    assert [v.field for v in refused.value.field_violations] == ["activities[0].qualifying_spend"]


async def test_each_published_ladder_is_a_new_version_and_a_bad_one_is_refused(
    tiers: Tiers,
) -> None:
    second = await tiers(publish_ladder, huayue(window_months=6))
    assert second.version == 2
    bad = huayue()
    bad.tiers[2].thresholds[Metric.QUALIFYING_SPEND] = Decimal(100)

    with pytest.raises(InvalidArgument):
        await tiers(publish_ladder, bad)

    assert (await tiers(ladder)).window_months == 6
