"""The MemberTier aggregate's own rules (pure), and its events as the contract carries them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from loyalty_tiers.domain.events import TierChanged
from loyalty_tiers.domain.grants import Grant, GrantKind, GrantState
from loyalty_tiers.domain.ladder import Metric
from loyalty_tiers.domain.member_tier import MemberTier

from tests.tiers.ladders import huayue
from tests.tiers.unit.conftest import ANN, T0

LADDER = huayue()


def gold_gift(ends: timedelta = timedelta(days=30)) -> Grant:
    return Grant.given(ANN, GrantKind.GIFT, "gold", "gift", T0, T0 + ends)


def test_settling_with_nothing_changed_records_nothing() -> None:
    member = MemberTier.entry(ANN, LADDER, T0)

    settled = member.settle(LADDER, "qualified", T0)

    assert (settled.holder, settled.lapsed, settled.announced) == (None, 0, False)
    assert member.events == [] and member.new_history == []


def test_a_grant_is_recorded_to_be_inserted_and_its_tier_announced() -> None:
    member = MemberTier.entry(ANN, LADDER, T0)
    gift = gold_gift()

    member.grant(LADDER, gift, T0)

    assert member.changed_grants == {gift.grant_id: (gift, True)}
    assert member.effective == "gold"
    assert member.events == [TierChanged(ANN, "basic", "gold", "granted", T0, None, gift.ends_at)]
    assert member.new_history[0].to_tier == "gold"


def test_a_grant_that_ran_out_is_ended_at_its_own_end() -> None:
    member = MemberTier.entry(ANN, LADDER, T0)
    member.grant(LADDER, gold_gift(), T0)

    settled = member.end_lapsed_grants(LADDER, T0 + timedelta(days=40))

    assert (settled.lapsed, settled.announced) == (1, True)
    assert member.grants == []
    ((ended, added),) = member.changed_grants.values()
    assert (ended.state, ended.ends_at, added) == (GrantState.ENDED, T0 + timedelta(days=30), True)
    assert member.events[-1].effective_at == T0 + timedelta(days=30)


def test_rising_starts_a_tier_year_and_never_lowers() -> None:
    member = MemberTier.entry(ANN, LADDER, T0)
    spend = {Metric.QUALIFYING_SPEND: Decimal(25_000)}

    assert member.rise_to(LADDER, spend, T0)
    assert not member.rise_to(LADDER, {Metric.QUALIFYING_SPEND: Decimal(0)}, T0)
    assert (member.tier, member.tier_year_end) == ("gold", T0.replace(year=2027))


def test_an_unmerge_never_lifts_the_survivor() -> None:
    member = MemberTier(ANN, "silver", T0, None)
    before = MemberTier(ANN, "gold", T0, None)

    member.unmerge(LADDER, before, T0)

    assert member.tier == "silver"
    assert member.events == []
