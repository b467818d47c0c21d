"""Imported past orders as the tiers service follows identity's LegacyOrdersImported on the real
bus: qualifying activity (no points) that earns upgrades from inside the window (judged by the
upgrade job moments later), counted once per unit and order whether a redelivery, a second
import or a live earn brings it again (also inside a chunk of new ones); other
currencies and unreadable entries skipped without blocking the chunk; a REPLAY chunk counted
once, through the points service's earns."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from loyalty.common.v1.money_pb2 import Money
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.identity.v1 import order_import_pb2 as order_pb
from loyalty.tiers.v1 import tiers_service_pb2 as pb
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp
from loyalty_tiers.domain.ladder import Totals
from loyalty_tiers.domain.orders import OrderActivity
from loyalty_tiers.service_layer.uow import TiersUnitOfWork

from tests.points.conftest import Points, rid
from tests.points.test_migration import member_id, send
from tests.tiers.conftest import tier_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

ACTIVITY_ONLY = order_pb.ORDER_IMPORT_MODE_ACTIVITY_ONLY
REPLAY = order_pb.ORDER_IMPORT_MODE_REPLAY


def past(
    member: str, amount: str, days_ago: float, order_id: str = "", currency: str = "CNY"
) -> identity_events.ImportedOrder:
    return identity_events.ImportedOrder(
        member_id=member_id(member),
        order_id=order_id or f"legacy-{uuid.uuid4().hex[:10]}",
        amount=Money(currency_code=currency, amount=amount),
        occurred_at=timestamp(datetime.now(UTC) - timedelta(days=days_ago)),
    )


def orders(
    unit: str, *entries: identity_events.ImportedOrder, mode: Any = ACTIVITY_ONLY
) -> identity_events.LegacyOrdersImported:
    return identity_events.LegacyOrdersImported(
        order_import=f"orderImports/{uuid.uuid4().hex[:12]}",
        unit=unit,
        mode=mode,
        orders=list(entries),
        imported_at=timestamp(datetime.now(UTC)),
    )


async def spend_of(tiers: Any, member: str) -> Decimal:
    found = await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))
    return sum((Decimal(p.current) for p in found.progress), Decimal(0))


async def spend_reaches(tiers: Any, member: str, expected: str) -> None:
    """Wait until the member's window spend is `expected` (events take a moment to arrive)."""
    for _ in range(200):
        spend = await spend_of(tiers, member)
        if spend == Decimal(expected):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{member}'s spend never reached {expected}; it is {spend}")


async def test_history_is_activity_and_the_part_inside_the_window_earns_an_upgrade(
    points: Points, tiers: Any
) -> None:
    member = await points.member()
    await send(
        points,
        orders(
            "mall",
            past(member, "250000.00", days_ago=500),  # last year's: history, not the window
            past(member, "3000.00", days_ago=100),
            past(member, "2500.00", days_ago=20),
        ),
    )

    found = await tier_of(tiers, member, "silver")
    assert found.earned_tier == "silver"
    await spend_reaches(tiers, member, "5500")
    history = await tiers.ListTierHistory(pb.ListTierHistoryRequest(member=member))
    assert [(c.from_tier, c.to_tier, c.reason) for c in history.changes] == [
        ("basic", "silver", "qualified")
    ]
    assert (await points.balance(member)).available == 0  # no points for imported activity


async def test_the_same_orders_again_change_nothing(points: Points, tiers: Any) -> None:
    member, marker = await points.member(), await points.member()
    # Order IDs of this test only: the session's other tests count hotel orders too.
    h1, h2 = f"H-{uuid.uuid4().hex[:8]}", f"H-{uuid.uuid4().hex[:8]}"
    first = orders("hotel", past(member, "4000.00", 30, h1), past(member, "500.00", 3, h2))
    event_id = await send(points, first)
    await spend_reaches(tiers, member, "4500")

    await send(points, first, event_id, msg_id=rid())  # the bus delivers it again
    again = orders("hotel", past(member, "4000.00", 30, h1), past(member, "500.00", 3, h2))
    await send(points, again)  # the same file imported again
    await send(points, orders("hotel", past(marker, "1.00", 1)))  # handled after all of them
    await spend_reaches(tiers, marker, "1")

    assert await spend_of(tiers, member) == Decimal(4500)
    assert (await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))).tier == "basic"


async def test_a_live_earn_of_an_imported_order_is_not_counted_twice(
    points: Points, tiers: Any
) -> None:
    member, marker = await points.member(), await points.member()
    order_id = f"M-{uuid.uuid4().hex[:8]}"
    await send(points, orders("mall", past(member, "4000.00", 1, order_id)))
    await spend_reaches(tiers, member, "4000")

    await points.earn(member, "mall", "4000.00", order_id=order_id)  # the till sends it too
    await points.earn(marker, "mall", "5000.00")  # tiers counts it after the earn above
    await tier_of(tiers, marker, "silver")

    assert (await points.balance(member)).available == 4000  # its points are earned once
    assert await spend_of(tiers, member) == Decimal(4000)  # its spend counted once: no silver
    assert (await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))).tier == "basic"


async def test_other_currencies_and_unreadable_entries_are_skipped_not_blocking(
    points: Points, tiers: Any
) -> None:
    member = await points.member()
    broken = past(member, "100.00", 2)
    broken.member_id = "not-a-member"
    await send(
        points,
        orders(
            "mall",
            past(member, "9000.00", 5, currency="HKD"),
            broken,
            past(member, "-50.00", 2),
            past(member, "120.00", 2),
        ),
    )

    await spend_reaches(tiers, member, "120")
    assert (await tiers.GetMemberTier(pb.GetMemberTierRequest(member=member))).tier == "basic"


async def test_a_replayed_order_is_counted_once_through_its_earn(
    points: Points, tiers: Any
) -> None:
    member, marker = await points.member(), await points.member()
    await send(points, orders("mall", past(member, "6000.00", 5), mode=REPLAY))
    await send(points, orders("mall", past(marker, "1.00", 1)))  # tiers reads it after the above

    await tier_of(tiers, member, "silver")
    await spend_reaches(tiers, marker, "1")
    assert (await points.balance(member)).available == 6000  # earned by the points service
    assert await spend_of(tiers, member) == Decimal(6000)  # its PointsEarned only, not the chunk


async def test_orders_counted_before_are_skipped_by_a_chunk_of_new_ones(
    tiers_service: RunningService,
) -> None:
    """One order of a chunk was counted by another import: the chunk's COPY is undone and the
    chunk recorded without that order."""
    unit, taken = "mall", f"T-{uuid.uuid4().hex[:8]}"
    member, at = str(uuid.uuid4()), datetime.now(UTC) - timedelta(days=1)
    orders = [OrderActivity(member, o, at, Decimal(10), None) for o in (f"{taken}-a", taken)]
    uow = TiersUnitOfWork(tiers_service.context.database, "tests")
    async with uow:
        other = OrderActivity(str(uuid.uuid4()), taken, at, Decimal(10), None)
        assert await uow.tiers.record_orders(unit, "orderImports/other", [other]) == [other]
        await uow.commit()
    async with uow:
        recorded = await uow.tiers.record_orders(unit, "orderImports/again", orders)
        await uow.commit()

    assert [o.order_id for o in recorded] == [f"{taken}-a"]
    async with uow:
        spend = await uow.tiers.activity(member, at - timedelta(days=1), datetime.now(UTC))
    assert spend == {unit: Totals(Decimal(10), 0, 1)}
