"""Past orders replayed as offline receipts, over the fake unit of work: each earns under the
programme version, campaigns and tier in force when it happened; once per (unit, order ID);
points that had expired already are earned and expired at once; pending days run from the
order's time; what cannot earn is skipped and counted."""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from loyalty_kit.kernel.orders import OrderMode, PastOrder, PastOrders
from loyalty_points.domain import events
from loyalty_points.domain.account import SUSPENDED, Account
from loyalty_points.domain.errors import OrderAlreadyEarned
from loyalty_points.domain.ledger import LotStatus, PostingKind
from loyalty_points.domain.programme import Campaign, UnitRule
from loyalty_points.service_layer import consumers, earning, programmes, settlement
from loyalty_points.service_layer.replay import Replayed, replay_orders

from tests.points.unit.conftest import World, programme


def order(
    member_id: str,
    amount: str,
    at: datetime,
    order_id: str = "",
    currency: str = "CNY",
) -> PastOrder:
    return PastOrder(
        member_id, order_id or f"legacy-{uuid.uuid4().hex[:8]}", Decimal(amount), currency, at
    )


async def replay(world: World, *orders: PastOrder, unit: str = "mall") -> Replayed:
    chunk = PastOrders("orderImports/o-1", unit, OrderMode.REPLAY, list(orders), Counter())
    async with world.uow as uow:
        done = await replay_orders(uow, chunk, world.now)
        await uow.commit()
    return done


def earns(world: World, member_id: str) -> list[tuple[int, datetime, int | None]]:
    """(points, occurred_at, programme version) of the member's earn postings."""
    return [
        (p.points, p.occurred_at, p.programme_version)
        for p in world.ledger.postings_of(member_id, PostingKind.EARN)
    ]


async def test_an_order_earns_under_the_programme_version_then_in_force(world: World) -> None:
    member = world.member()
    before = world.now - timedelta(days=10)
    raised = dataclasses.replace(
        programme(),
        effective_from=world.now + timedelta(days=1),
        units={**programme().units, "mall": UnitRule("mall", Decimal(3))},
    )
    async with world.uow as uow:
        await programmes.publish_programme(uow, raised, "mall triples", world.now)
        await uow.commit()
    world.later(days=2)
    after = world.now - timedelta(hours=12)

    done = await replay(world, order(member, "100", before), order(member, "100", after))

    assert (done.earned, done.points, done.expired) == (2, 400, 0)
    assert earns(world, member) == [(100, before, 1), (300, after, 2)]
    assert await world.balance(member) == (400, 0)
    assert world.ledger.accounts[member].lifetime_earned == 400


async def test_one_chunk_reads_the_versions_once_and_each_order_earns_under_its_own(
    world: World,
) -> None:
    member = world.member()
    start = world.now
    for days, rate in ((1, 3), (3, 5)):  # version 2: the mall triples; version 3: five times
        later = dataclasses.replace(
            programme(),
            effective_from=start + timedelta(days=days),
            units={**programme().units, "mall": UnitRule("mall", Decimal(rate))},
        )
        async with world.uow as uow:
            await programmes.publish_programme(uow, later, f"mall x{rate}", world.now)
            await uow.commit()
    world.later(days=4)
    under_3, under_1 = start + timedelta(days=3, hours=1), start - timedelta(days=5)
    under_2, too_early = start + timedelta(days=2), datetime(2019, 6, 1, tzinfo=UTC)
    reads = world.ledger.programme_reads

    done = await replay(
        world,
        order(member, "10", under_3),
        order(member, "10", under_1),
        order(member, "10", too_early),
        order(member, "10", under_2),
        order(member, "10", under_1 + timedelta(hours=1)),
    )

    assert world.ledger.programme_reads - reads == 1  # not once per order
    assert (done.earned, done.points, done.skipped) == (4, 100, Counter(before_programme=1))
    assert sorted(earns(world, member), key=lambda e: e[1]) == [
        (10, under_1, 1),
        (10, under_1 + timedelta(hours=1), 1),
        (30, under_2, 2),
        (50, under_3, 3),
    ]


async def test_a_campaign_running_then_applies_and_one_over_does_not() -> None:
    eleven = datetime(2025, 11, 10, 16, tzinfo=UTC)  # 11 November in Shanghai
    double = Campaign(
        "double-11", "double points", eleven, eleven + timedelta(days=1), ("mall",), (), Decimal(2)
    )
    world = World()
    async with world.uow as uow:
        first = dataclasses.replace(programme(), campaigns=[double])  # since 2020
        await programmes.publish_programme(uow, first, "tests", world.now)
        await uow.commit()
    member = world.member()

    await replay(
        world,
        order(member, "50.00", eleven + timedelta(hours=3)),
        order(member, "50.00", eleven + timedelta(days=2)),
    )

    assert [p for p, _, _ in earns(world, member)] == [100, 50]


async def test_an_order_earns_at_the_tier_the_member_held_then(world: World) -> None:
    member = world.member()
    became_gold = world.now - timedelta(days=30)
    async with world.uow as uow:
        await consumers.on_tier_changed(uow, member, "gold", became_gold, world.now)
        await uow.commit()

    await replay(
        world,
        order(member, "100", became_gold - timedelta(days=5)),
        order(member, "100", became_gold + timedelta(days=5)),
    )

    assert [p for p, _, _ in earns(world, member)] == [100, 125]


async def test_points_already_expired_are_earned_and_expired_at_once(world: World) -> None:
    member = world.member()
    long_ago = datetime(2023, 5, 20, tzinfo=UTC)  # its points expired at the end of May 2025

    done = await replay(world, order(member, "300", long_ago), order(member, "20", world.now))

    assert (done.earned, done.points, done.expired) == (2, 320, 300)
    assert await world.balance(member) == (20, 0)
    assert world.ledger.accounts[member].lifetime_earned == 320
    earn, expiry = world.ledger.postings_of(member)[:2]
    assert (earn.kind, earn.points, earn.occurred_at) == (PostingKind.EARN, 300, long_ago)
    expired_at = programme().expiry_of(long_ago)
    assert expired_at is not None and expired_at.isoformat() == "2025-06-01T00:00:00+08:00"
    assert (expiry.kind, expiry.points, expiry.occurred_at, expiry.posted_at) == (
        PostingKind.EXPIRE,
        -300,
        expired_at,
        world.now,
    )
    assert expiry.related_posting_id == earn.posting_id
    lapsed = next(lot for lot in world.ledger.lots_of(member) if lot.posting_id == earn.posting_id)
    assert (lapsed.remaining, lapsed.status) == (0, LotStatus.EXPIRED)
    expired = [
        e for e in world.published(events.PointsExpired) if isinstance(e, events.PointsExpired)
    ]
    assert [(e.points, e.occurred_at) for e in expired] == [(300, expired_at)]
    assert len(world.published(events.PointsEarned)) == 2  # tiers counts both purchases


async def test_the_settlement_shows_the_unit_issuing_and_the_points_lapsing(world: World) -> None:
    member, start = world.member(), world.now
    await replay(world, order(member, "300", datetime(2023, 5, 20, tzinfo=UTC)))
    async with world.uow as uow:
        report = await settlement.settlement(
            uow, start, world.now + timedelta(seconds=1), world.now
        )

    assert (report.units["mall"].issued, report.units["mall"].expired) == (300, 300)
    assert report.ledger_points == 0


async def test_pending_days_run_from_the_orders_time(world: World) -> None:
    member = world.member()
    recent, older = world.now - timedelta(days=3), world.now - timedelta(days=10)

    await replay(world, order(member, "100", recent), order(member, "50", older), unit="hotel")

    assert await world.balance(member) == (100, 200)  # x2 at the hotel; 7 pending days
    pending = [lot for lot in world.ledger.lots_of(member) if lot.status is LotStatus.PENDING]
    assert [lot.available_at for lot in pending] == [recent + timedelta(days=7)]


async def test_an_order_earns_once_whatever_brings_it_again(world: World) -> None:
    member = world.member()
    first = order(member, "100", world.now - timedelta(days=1), "M-1")
    await replay(world, first)
    again = await replay(world, first, order(member, "10", first.occurred_at, "M-2"))

    assert (again.earned, again.earned_before) == (1, 1)
    assert await world.balance(member) == (110, 0)
    with pytest.raises(OrderAlreadyEarned):  # nor does the till earn it live afterwards
        await world.earn(member, "mall", "100", order_id="M-1")


async def test_an_order_that_earned_live_is_not_replayed(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "100", order_id="LIVE-1")
    done = await replay(world, order(member, "100", world.now - timedelta(days=1), "LIVE-1"))

    assert (done.earned, done.earned_before) == (0, 1)
    assert await world.balance(member) == (100, 0)


async def test_what_cannot_earn_is_skipped_and_counted_and_the_rest_earns(world: World) -> None:
    member, suspended = world.member(), world.member()
    async with world.uow as uow:
        await uow.ledger.create_account(Account(suspended, SUSPENDED), world.now)
        await uow.commit()
    last_week = world.now - timedelta(days=7)

    done = await replay(
        world,
        order(member, "100", datetime(2019, 12, 31, tzinfo=UTC)),  # before the programme
        order(member, "100", last_week, currency="USD"),
        order(member, "0", last_week),
        order(suspended, "100", last_week),
        order(member, "100", last_week),
    )

    assert done.earned == 1
    assert done.skipped == Counter(
        {
            "before_programme": 1,
            "currency_not_priced": 1,
            "zero_amount": 1,
            "member_not_active": 1,
        }
    )
    assert await world.balance(suspended) == (0, 0)
    assert (await replay(world, order(member, "1", last_week), unit="spa")).skipped == Counter(
        {"unit_not_in_programme": 1}
    )


async def test_a_merged_members_order_earns_for_the_survivor(world: World) -> None:
    survivor, absorbed = world.member(), world.member()
    async with world.uow as uow:
        await consumers.on_member_merged(uow, survivor, absorbed, world.now)
        await uow.commit()

    await replay(world, order(absorbed, "100", world.now - timedelta(days=1)))

    assert await world.balance(survivor) == (100, 0)
    assert await world.balance(absorbed) == (0, 0)


async def test_a_replayed_order_is_refunded_as_any_earn(world: World) -> None:
    member = world.member()
    await replay(world, order(member, "80", world.now - timedelta(days=2), "M-9"))
    async with world.uow as uow:
        posting, _ = await earning.reverse(uow, member, "mall", "M-9", [], "refund", world.now)
        await uow.commit()

    assert posting.points == -80
    assert await world.balance(member) == (0, 0)


async def test_no_referral_bonus_is_paid_for_a_replayed_order(world: World) -> None:
    member, referrer = world.member(), world.member()
    async with world.uow as uow:
        await earning.record_referral(uow, member, referrer, world.directory, world.now)
        await uow.commit()

    await replay(world, order(member, "100", world.now - timedelta(days=1)))

    assert await world.balance(referrer) == (0, 0)
    assert await world.balance(member) == (100, 0)
    await world.earn(member, "mall", "10")  # the first purchase on the platform pays it
    assert await world.balance(referrer) == (500, 0)
