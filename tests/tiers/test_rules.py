"""The ladder's rules, pure: growth value, windows, retention, grants (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from loyalty_kit.errors import InvalidArgument
from loyalty_tiers.domain.grants import Grant, GrantKind, GrantState, holding_grant
from loyalty_tiers.domain.ladder import (
    Metric,
    Totals,
    Window,
    decimal_of,
    ladder_from_json,
    ladder_to_json,
)

from tests.tiers.ladders import SPEND, huayue


def test_growth_value_weighs_each_units_spend() -> None:
    ladder = huayue(growth_weights={"hotel": Decimal(2), "estate": Decimal("0.1")})
    activity = ladder.activity(
        {"hotel": Totals(Decimal(1000), 2000, 1), "estate": Totals(Decimal(100000), 0, 1)},
        ("mall", Totals(Decimal(500), 500, 2)),
    )
    assert activity[Metric.GROWTH_VALUE] == Decimal(2000 + 10000 + 500)
    assert activity[SPEND] == Decimal(101500)
    assert activity[Metric.POINTS_EARNED] == 2500 and activity[Metric.VISITS] == 4


def test_windows_start_where_the_ladder_says() -> None:
    now = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)  # 09:00 on 1 January in Shanghai
    rolling = huayue()
    assert rolling.window_start(now, None) == datetime(2025, 1, 1, 1, 0, tzinfo=UTC)
    calendar = huayue(window=Window.CALENDAR_YEAR, time_zone="Asia/Shanghai")
    assert calendar.window_start(now, None) == datetime(2025, 12, 31, 16, 0, tzinfo=UTC)
    tier_year = huayue(window=Window.TIER_YEAR)
    end = datetime(2026, 6, 30, tzinfo=UTC)
    assert tier_year.window_start(now, end) == datetime(2025, 6, 30, tzinfo=UTC)
    assert tier_year.window_start(now, None) == datetime(2025, 1, 1, 1, 0, tzinfo=UTC)


def test_retention_keeps_with_half_and_the_policy_decides_how_far_down() -> None:
    one_level, to_supported = huayue(), huayue(downgrade_to_supported=True)
    half = {SPEND: Decimal(40_000)}
    nothing = {SPEND: Decimal(0)}
    assert one_level.after_tier_year(3, half) == 3  # platinum kept with 40,000
    assert one_level.after_tier_year(3, nothing) == 2  # one level down
    assert to_supported.after_tier_year(3, nothing) == 0  # down to what the year supports
    assert to_supported.after_tier_year(3, {SPEND: Decimal(21_000)}) == 2


def test_grace_days_extend_the_year_judged() -> None:
    end = datetime(2026, 6, 30, tzinfo=UTC)
    assert huayue(grace_days=30).tier_year(end) == (
        datetime(2025, 6, 30, tzinfo=UTC),
        end + timedelta(days=30),
    )


def test_a_ladder_is_checked_whole() -> None:
    bad = huayue(grace_days=400, time_zone="Mars/Olympus", growth_weights={"hotel": Decimal(-1)})
    with pytest.raises(InvalidArgument) as raised:
        bad.validate()
    assert {v.field for v in raised.value.field_violations} == {
        "ladder.grace_days",
        "ladder.time_zone",
        "ladder.growth_weights[hotel]",
    }


def test_a_ladder_counts_spend_in_a_currency_it_knows() -> None:
    with pytest.raises(InvalidArgument) as raised:
        huayue(base_currency="XYZ").validate()
    assert [v.field for v in raised.value.field_violations] == ["ladder.base_currency_code"]
    huayue(base_currency="JPY").validate()


def test_spend_may_not_have_more_digits_than_the_base_currency() -> None:
    assert decimal_of("20000.50", "value", currency="CNY") == Decimal("20000.50")
    with pytest.raises(InvalidArgument):
        decimal_of("20000.5", "value", currency="JPY")
    assert decimal_of("1.25", "weight") == Decimal("1.25")  # not money: its own digits
    huayue().check_spend([Decimal("1.5"), Decimal("12.34")], "activities[{}].qualifying_spend")
    with pytest.raises(InvalidArgument) as raised:
        huayue(base_currency="JPY").check_spend(
            [Decimal(100), Decimal("1.5")], "activities[{}].qualifying_spend"
        )
    assert [v.field for v in raised.value.field_violations] == ["activities[1].qualifying_spend"]


def test_the_base_currency_is_stored_and_a_ladder_stored_before_it_counted_cny() -> None:
    stored = ladder_to_json(huayue(base_currency="HKD"))
    assert ladder_from_json(2, stored).base_currency == "HKD"
    del stored["base_currency"]
    assert ladder_from_json(2, stored).base_currency == "CNY"


NOW = datetime(2026, 11, 23, tzinfo=UTC)
CODES = ["basic", "silver", "gold", "platinum", "diamond"]
grants = st.lists(
    st.builds(
        lambda tier, start, length, state: Grant(
            "m",
            f"g{start}{length}",
            GrantKind.GIFT,
            tier,
            "test",
            NOW + timedelta(days=start),
            NOW + timedelta(days=start + length),
            state,
        ),
        st.sampled_from(CODES[1:]),
        st.integers(-400, 10),
        st.integers(1, 400),
        st.sampled_from(list(GrantState)),
    ),
    max_size=6,
)


@given(earned=st.sampled_from(CODES), grants=grants)
def test_a_grant_never_lowers_a_tier_and_only_grants_in_force_lift_it(
    earned: str, grants: list[Grant]
) -> None:
    ladder = huayue()
    holder = holding_grant(ladder, earned, grants, NOW)
    tier = holder.tier if holder else earned
    assert ladder.index_of(tier) >= ladder.index_of(earned)
    in_force = [g for g in grants if g.in_force(NOW)]
    assert ladder.index_of(tier) == max(
        [ladder.index_of(earned)] + [ladder.index_of(g.tier) for g in in_force]
    )
    if holder is not None:
        assert holder.in_force(NOW)


spends = st.lists(st.integers(-30_000, 400_000).map(Decimal), max_size=8)


@given(spends=spends, more=st.integers(0, 400_000).map(Decimal))
def test_more_activity_never_supports_a_lower_tier_and_order_does_not_matter(
    spends: list[Decimal], more: Decimal
) -> None:
    ladder = huayue()
    total = ladder.activity({"mall": Totals(sum(spends, Decimal(0)))})
    reordered = ladder.activity({"mall": Totals(sum(reversed(spends), Decimal(0)))})
    assert ladder.supported(total) == ladder.supported(reordered)
    bigger = ladder.activity({"mall": Totals(sum(spends, Decimal(0)))}, ("hotel", Totals(more)))
    assert ladder.supported(bigger) >= ladder.supported(total)


@given(current=st.integers(0, 4), spend=st.integers(0, 400_000).map(Decimal))
def test_a_tier_year_never_moves_up_and_at_most_one_level_by_default(
    current: int, spend: Decimal
) -> None:
    ladder = huayue()
    after = ladder.after_tier_year(current, {SPEND: spend})
    assert current - 1 <= after <= current
    assert max(0, current - 1) <= after
