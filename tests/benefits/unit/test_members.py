"""What the benefits service learns of members: tiers (welcome gifts), suspension, merges,
unmerges, erasure, birthdays (gifts), and rewards' stock."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import pytest
from loyalty_benefits.domain.coupons import CouponState
from loyalty_benefits.domain.errors import RewardNotFound
from loyalty_benefits.service_layer import handlers
from loyalty_kit.errors import MemberNotActive, PermissionDenied

from tests.benefits.unit.conftest import ANN, BOB, YEAR_END, Benefits


async def test_an_upgrade_grants_the_welcome_gift_once_ever(benefits: Benefits) -> None:
    await benefits.tier(ANN, "gold")
    benefits.later(days=1)
    await benefits.tier(ANN, "silver", before="gold")
    benefits.later(days=1)
    await benefits.tier(ANN, "gold", before="silver")

    assert sorted(c.template_code for c in benefits.coupons(ANN)) == [
        "welcome-gold",
    ]


async def test_a_legacy_tier_carried_over_is_learned_without_a_welcome_gift(
    benefits: Benefits,
) -> None:
    now = benefits.now
    await benefits(
        handlers.on_tier_changed, ANN, "basic", "gold", now, YEAR_END, now, "carried_over"
    )
    await benefits(handlers.on_tier_changed, BOB, "basic", "gold", now, YEAR_END, now, "granted")

    assert benefits.store.tables.tiers[ANN].tier == "gold"
    assert benefits.coupons(ANN) == []  # a member import brought the tier: nothing to welcome
    assert [c.template_code for c in benefits.coupons(BOB)] == ["welcome-gold"]


async def test_a_tier_change_arriving_late_is_ignored(benefits: Benefits) -> None:
    await benefits.tier(ANN, "gold")
    older = benefits.now - timedelta(days=3)

    await benefits(handlers.on_tier_changed, ANN, "basic", "silver", older, YEAR_END, older)

    assert benefits.store.tables.tiers[ANN].tier == "gold"


async def test_a_suspended_member_learns_its_tier_without_a_gift_and_consumes_nothing(
    benefits: Benefits,
) -> None:
    await benefits(handlers.on_member_suspended, ANN, benefits.now)
    await benefits.tier(ANN, "gold")

    with pytest.raises(MemberNotActive) as raised:
        await benefits(handlers.consume, ANN, "hotel-late-checkout", "hotel", "o", benefits.now)

    assert benefits.store.tables.tiers[ANN].tier == "gold"
    assert benefits.coupons(ANN) == []
    assert raised.value.reason == "MEMBER_SUSPENDED"


async def test_a_reactivated_member_is_served_again(benefits: Benefits) -> None:
    await benefits.tier(ANN, "gold")
    await benefits(handlers.on_member_suspended, ANN, benefits.now)

    await benefits(handlers.on_member_reactivated, ANN)
    consumption, _ = await benefits(
        handlers.consume, ANN, "hotel-late-checkout", "hotel", "o", benefits.now
    )

    assert consumption.member_id == ANN


async def test_a_merge_moves_coupons_and_quota_and_refuses_the_absorbed_id(
    benefits: Benefits,
) -> None:
    await benefits.tier(ANN, "gold")
    await benefits.tier(BOB, "gold")
    consumed, _ = await benefits(
        handlers.consume, BOB, "hotel-late-checkout", "hotel", "o", benefits.now
    )

    await benefits(handlers.on_member_merged, ANN, BOB, benefits.now)

    assert sorted(c.template_code for c in benefits.coupons(ANN)) == [
        "welcome-gold",
        "welcome-gold",
    ]
    _, found = await benefits(handlers.entitlements, ANN, "hotel", benefits.now)
    assert found[0].used == 1
    with pytest.raises(MemberNotActive) as raised:
        await benefits(handlers.member_coupons, BOB, None, benefits.now, None, 10)
    assert raised.value.reason == "MEMBER_MERGED"
    assert consumed.consumption_id in benefits.store.tables.consumptions


async def test_an_unmerge_gives_back_what_came_from_the_restored_member(
    benefits: Benefits,
) -> None:
    await benefits.tier(ANN, "gold")
    await benefits.tier(BOB, "gold")
    await benefits(handlers.consume, BOB, "hotel-late-checkout", "hotel", "o", benefits.now)
    await benefits(handlers.on_member_merged, ANN, BOB, benefits.now)

    await benefits(handlers.on_member_unmerged, ANN, BOB, benefits.now)
    await benefits.tier(BOB, "gold", before="basic")

    assert [c.template_code for c in benefits.coupons(BOB)] == ["welcome-gold"]
    _, ann = await benefits(handlers.entitlements, ANN, "hotel", benefits.now)
    _, bob = await benefits(handlers.entitlements, BOB, "hotel", benefits.now)
    assert (ann[0].used, bob[0].used) == (0, 1)


async def test_an_erasure_voids_unused_coupons_and_refuses_the_id(benefits: Benefits) -> None:
    await benefits.tier(ANN, "gold")

    await benefits(handlers.on_member_erased, ANN, benefits.now)

    assert benefits.coupons(ANN) == []
    assert ANN not in benefits.store.tables.tiers
    with pytest.raises(MemberNotActive) as raised:
        await benefits(handlers.issue_coupons, "birthday-gift", [ANN], None, benefits.now)
    assert raised.value.reason == "MEMBER_ERASED"


async def test_birthday_gifts_go_once_a_year_to_silver_and_up_not_to_the_suspended(
    benefits: Benefits,
) -> None:
    third = "00000000-0000-0000-0000-0000000000c3"
    for member_id in (ANN, BOB, third):
        await benefits.tier(member_id, "silver")
        await benefits(handlers.on_profile_changed, member_id, 3, 2)
    await benefits(handlers.on_member_suspended, third, benefits.now)
    await benefits(handlers.on_profile_changed, BOB, 7, 1)  # moved: not today
    birthday = datetime(2026, 3, 2, 2, tzinfo=UTC)

    first = await handlers.run_birthday_gifts(benefits.uow_factory, birthday, 1)
    second = await handlers.run_birthday_gifts(benefits.uow_factory, birthday, 10)

    assert (first.celebrating, first.granted) == (2, 1)
    assert (second.celebrating, second.granted) == (2, 0)
    assert [c.template_code for c in benefits.coupons(ANN)] == ["welcome-silver", "birthday-gift"]
    assert all(c.template_code != "birthday-gift" for c in benefits.coupons(third))


async def test_birthday_gifts_stop_at_a_limit_and_carry_on_after_the_member_they_stopped_at(
    benefits: Benefits,
) -> None:
    third = "00000000-0000-0000-0000-0000000000c3"
    for member_id in (ANN, BOB, third):
        await benefits.tier(member_id, "silver")
        await benefits(handlers.on_profile_changed, member_id, 3, 2)
    birthday = datetime(2026, 3, 2, 2, tzinfo=UTC)
    async with benefits.uow_factory() as uow:
        assert await handlers.celebrating_after(uow, birthday, None) == 3

    first = await handlers.run_birthday_gifts(benefits.uow_factory, birthday, 500, limit=2)
    assert (first.celebrating, first.granted, first.after) == (2, 2, BOB)
    async with benefits.uow_factory() as uow:
        assert await handlers.celebrating_after(uow, birthday, first.after) == 1
    rest = await handlers.run_birthday_gifts(
        benefits.uow_factory, birthday, 500, after=first.after, limit=2
    )
    assert (rest.celebrating, rest.granted, rest.after) == (1, 1, None)


async def test_rewards_are_restocked_by_their_unit_and_listed_with_stock(
    benefits: Benefits,
) -> None:
    reward, stock = await benefits(handlers.restock, "cinema-ticket", 5, "cinema")
    with pytest.raises(PermissionDenied):
        await benefits(handlers.restock, "cinema-ticket", 5, "mall")
    with pytest.raises(RewardNotFound):
        await benefits(handlers.restock, "no-such", 5, None)

    listed = await benefits(handlers.rewards, "cinema")

    assert (reward.code, stock) == ("cinema-ticket", 5)
    assert [(r.code, n) for r, n in listed] == [("cinema-ticket", 5)]


def test_coupon_states_are_the_contracts() -> None:
    assert {s.value for s in CouponState} >= {"issued", "redeemed"}


async def test_imported_members_birthdays_are_remembered_as_a_profiles_are(
    benefits: Benefits,
) -> None:
    cy, di, ed = (f"00000000-0000-0000-0000-0000000000c{n}" for n in range(3))
    await benefits(handlers.on_profile_changed, BOB, 5, 1)
    await benefits(handlers.on_member_erased, cy, benefits.now)
    await benefits(handlers.on_member_suspended, ed, benefits.now)

    kept = await benefits(
        handlers.on_members_imported,
        [(ANN, 2, 29), (BOB, 7, 14), (cy, 3, 3), (di, 2, 30), (ed, 12, 31)],
    )

    assert kept == 3
    assert benefits.store.tables.birthdays == {ANN: (2, 29), BOB: (7, 14), ed: (12, 31)}


async def test_with_the_fixed_welcome_gift_switched_off_an_upgrade_grants_nothing_here(
    benefits: Benefits,
) -> None:
    """Off by default: engagement's journey grants it (under the same grant key)."""
    from loyalty_benefits.bootstrap import BenefitsSettings

    assert BenefitsSettings.model_fields["fixed_welcome_gifts"].default is False
    now = benefits.now
    switched_off = functools.partial(handlers.on_tier_changed, welcome_gift=False)
    await benefits(switched_off, ANN, "basic", "gold", now, YEAR_END, now)

    assert benefits.store.tables.tiers[ANN].tier == "gold"
    assert benefits.coupons(ANN) == []


async def test_a_grant_key_issues_one_coupon_per_member_whoever_grants_first(
    benefits: Benefits,
) -> None:
    """A journey's welcome gift and the fixed trigger's share `welcome:{tier}`."""
    now = benefits.now
    await benefits.tier(ANN, "gold")  # the fixed trigger: welcome:gold
    first = benefits.coupons(ANN)
    again = await benefits(
        handlers.issue_coupons, "welcome-gold", [ANN, BOB], None, now, "welcome:gold"
    )
    repeat = await benefits(
        handlers.issue_coupons, "welcome-gold", [BOB], None, now, "welcome:gold"
    )

    assert [c.code for c in first] == [again[0].code]  # ANN's own, given back
    assert again[1].code == repeat[0].code  # BOB's, issued once
    assert sorted(c.template_code for c in benefits.coupons(BOB)) == ["welcome-gold"]
