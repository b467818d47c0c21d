"""Campaigns for badge holders: the rule (a campaign naming badges applies to a member holding
any of them when the order happened), its validation, and the badges held as points keeps them
from engagement's BadgeEarned and BadgeRevoked (late receipts, replays, merges)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from loyalty_kit.errors import InvalidArgument
from loyalty_points.domain.money import Amount
from loyalty_points.domain.programme import Campaign, Holding, Line, badges_held, compute_earn
from loyalty_points.service_layer import consumers, programmes

from tests.points.unit.conftest import World, programme
from tests.points.unit.test_replay import earns, order, replay

START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2031, 1, 1, tzinfo=UTC)
DOUBLE = Campaign(
    "explorer-double", "x2 for explorers", START, END, multiplier=Decimal(2), badges=("explorer",)
)


def test_a_badge_campaign_applies_to_holders_of_any_of_its_badges_only() -> None:
    at = datetime(2026, 6, 1, tzinfo=UTC)
    both = dataclasses.replace(DOUBLE, badges=("explorer", "founder"))
    assert both.applies("mall", "", at, frozenset({"founder"}))
    assert both.applies("mall", "gold", at, frozenset({"explorer", "other"}))
    assert not both.applies("mall", "", at, frozenset({"other"}))
    assert not both.applies("mall", "", at)  # no badges held
    # Without badges, for every member; with them, still within its window, units and tiers.
    assert dataclasses.replace(DOUBLE, badges=()).applies("mall", "", at)
    assert not DOUBLE.applies("mall", "", END, frozenset({"explorer"}))
    assert not dataclasses.replace(DOUBLE, tiers=("gold",)).applies(
        "mall", "silver", at, frozenset({"explorer"})
    )


def test_an_earn_doubles_for_a_holder_and_not_for_others() -> None:
    rules = dataclasses.replace(programme(), campaigns=[DOUBLE])
    lines = [Line("1", Amount("CNY", Decimal("100")))]
    at = datetime(2026, 6, 1, tzinfo=UTC)
    holder = compute_earn(rules, "mall", "", lines, at, frozenset({"explorer"}))
    other = compute_earn(rules, "mall", "", lines, at, frozenset({"founder"}))
    assert (holder.points, other.points) == (200, 100)
    assert [f.source for f in holder.factors] == ["unit:mall", "campaign:explorer-double"]


def test_badges_held_follow_when_each_was_held() -> None:
    t = datetime(2026, 3, 1, tzinfo=UTC)
    held = [Holding("explorer", t, t + timedelta(days=10)), Holding("founder", t)]
    assert badges_held(held, t - timedelta(seconds=1)) == frozenset()
    assert badges_held(held, t) == {"explorer", "founder"}
    assert badges_held(held, t + timedelta(days=10)) == {"founder"}


def test_badge_codes_must_be_well_formed() -> None:
    bad = dataclasses.replace(DOUBLE, badges=("explorer", "Not A Code", ""))
    with pytest.raises(InvalidArgument) as raised:
        dataclasses.replace(programme(), campaigns=[bad]).validate()
    assert {v.field for v in raised.value.field_violations} == {
        "programme.campaigns[0].badges[1]",
        "programme.campaigns[0].badges[2]",
    }


async def with_double() -> World:
    """A points service whose first programme has DOUBLE."""
    world = World()
    async with world.uow as uow:
        rules = dataclasses.replace(programme(), campaigns=[DOUBLE])
        await programmes.publish_programme(uow, rules, "tests", world.now)
        await uow.commit()
    return world


async def badge(world: World, member: str, at: datetime, revoked: bool = False) -> None:
    async with world.uow as uow:
        if revoked:
            await consumers.on_badge_revoked(uow, member, "explorer", at)
        else:
            await consumers.on_badge_earned(uow, member, "explorer", at)
        await uow.commit()


async def test_an_order_is_judged_by_the_badges_held_when_it_happened() -> None:
    world = await with_double()
    member = world.member()
    earned, revoked = world.now - timedelta(days=20), world.now - timedelta(days=5)
    await badge(world, member, earned)
    await badge(world, member, earned)  # a redelivery changes nothing
    await badge(world, member, revoked, revoked=True)

    before = await world.earn(member, "mall", "100", occurred_at=earned - timedelta(days=1))
    during = await world.earn(member, "mall", "100", occurred_at=earned + timedelta(days=1))
    after = await world.earn(member, "mall", "100")
    assert (before.points, during.points, after.points) == (100, 200, 100)
    # A replayed order too.
    await replay(world, order(member, "50", revoked - timedelta(hours=1)))
    assert earns(world, member)[-1][0] == 100


async def test_a_merged_survivor_holds_the_absorbed_members_badges() -> None:
    world = await with_double()
    survivor, absorbed = world.member(), world.member()
    await badge(world, absorbed, world.now - timedelta(days=3))
    async with world.uow as uow:
        await consumers.on_member_merged(uow, survivor, absorbed, world.now)
        await uow.commit()
    assert (await world.earn(survivor, "mall", "100")).points == 200
    early = await world.earn(survivor, "mall", "100", occurred_at=world.now - timedelta(days=4))
    assert early.points == 100
