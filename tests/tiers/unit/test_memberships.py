"""Paid memberships: bought, renewed, refunded; each order buys once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from loyalty_kit.errors import InvalidArgument, MemberNotActive
from loyalty_tiers.domain.errors import MembershipOrderNotFound, MembershipOrderUsed
from loyalty_tiers.domain.grants import GrantKind, GrantState
from loyalty_tiers.service_layer.grants import Granted
from loyalty_tiers.service_layer.identity_events import on_member_erased
from loyalty_tiers.service_layer.memberships import purchase_membership, refund_membership

from tests.tiers.unit.conftest import ANN, BOB, T0, Tiers


async def buy(tiers: Tiers, order_id: str, months: int = 12, tier: str = "gold") -> Granted:
    return await tiers(purchase_membership, ANN, "hotel", tier, order_id, months, tiers.now)


async def test_a_paid_membership_lifts_the_tier_for_the_months_bought(tiers: Tiers) -> None:
    done = await buy(tiers, "MS-1", 3)

    assert (done.tier, done.renewed) == ("gold", False)
    assert done.grant.kind is GrantKind.PAID_MEMBERSHIP
    assert done.grant.ends_at == T0.replace(month=6)
    assert done.grant.order_ids == ["MS-1"]
    assert done.grant.reason == "paid membership bought at hotel"
    assert tiers.reasons(ANN) == [("basic", "gold", "membership_purchased")]


async def test_buying_the_same_tier_again_while_it_runs_renews_it(tiers: Tiers) -> None:
    first = await buy(tiers, "MS-1", 3)
    tiers.later(days=10)

    again = await buy(tiers, "MS-2", 2)

    assert again.renewed
    assert again.grant.grant_id == first.grant.grant_id
    assert again.grant.ends_at == T0.replace(month=8)
    assert again.grant.order_ids == ["MS-1", "MS-2"]
    assert len(tiers.store.tables.grants) == 1
    assert tiers.reasons(ANN) == [("basic", "gold", "membership_purchased")]  # no change


async def test_another_tier_bought_is_another_membership(tiers: Tiers) -> None:
    await buy(tiers, "MS-1", tier="silver")

    done = await buy(tiers, "MS-2", tier="platinum")

    assert not done.renewed
    assert len(tiers.store.tables.grants) == 2
    assert tiers.reasons(ANN)[-1] == ("silver", "platinum", "membership_purchased")


async def test_an_order_buys_one_period_once(tiers: Tiers) -> None:
    await buy(tiers, "MS-1")

    with pytest.raises(MembershipOrderUsed) as refused:
        await tiers(purchase_membership, BOB, "hotel", "gold", "MS-1", 12, tiers.now)

    assert refused.value.metadata == {"unit": "hotel", "order_id": "MS-1"}
    assert BOB not in tiers.store.tables.members


async def test_months_must_be_one_to_thirty_six(tiers: Tiers) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await buy(tiers, "MS-1", 37)

    assert [v.field for v in refused.value.field_violations] == ["months"]


async def test_an_erased_member_buys_no_membership(tiers: Tiers) -> None:
    await tiers.earn(ANN, 10)
    await tiers(on_member_erased, ANN, tiers.now)

    with pytest.raises(MemberNotActive):
        await buy(tiers, "MS-1")


async def test_a_refund_ends_the_membership_at_once(tiers: Tiers) -> None:
    await tiers.earn(ANN, 6_000)
    await buy(tiers, "MS-1")

    done = await tiers(refund_membership, ANN, "hotel", "MS-1", tiers.later(days=3))

    assert done.tier == "silver"
    assert done.grant.state is GrantState.REVOKED
    assert done.grant.end_reason == "order MS-1 refunded"
    assert tiers.reasons(ANN)[-1] == ("gold", "silver", "membership_refunded")


async def test_a_refund_of_a_membership_already_over_changes_nothing(tiers: Tiers) -> None:
    await buy(tiers, "MS-1", 1)
    await tiers(refund_membership, ANN, "hotel", "MS-1", tiers.now)
    events = len(tiers.events)

    done = await tiers(refund_membership, ANN, "hotel", "MS-1", tiers.later(days=1))

    assert done.tier == "basic"
    assert len(tiers.events) == events


async def test_a_refund_names_the_member_who_bought(tiers: Tiers) -> None:
    await buy(tiers, "MS-1")

    with pytest.raises(MembershipOrderNotFound):
        await tiers(refund_membership, BOB, "hotel", "MS-1", tiers.now)
    with pytest.raises(MembershipOrderNotFound):
        await tiers(refund_membership, ANN, "mall", "MS-1", tiers.now)


async def test_an_erased_members_membership_can_still_be_refunded(tiers: Tiers) -> None:
    await buy(tiers, "MS-1")
    await tiers(on_member_erased, ANN, tiers.now)

    done = await tiers(refund_membership, ANN, "hotel", "MS-1", tiers.now + timedelta(hours=1))

    assert done.tier == "basic"
