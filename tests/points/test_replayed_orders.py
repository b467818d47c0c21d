"""Past orders replayed as offline receipts, as the points service follows identity's
LegacyOrdersImported (mode REPLAY) on the real bus: each earns under the rules in force when it
happened (Huayue's double points at the mall on 11 November 2025), points that had expired
already are earned and expired at once, orders from before the programme are skipped; once per
unit and order whatever brings it again; an ACTIVITY_ONLY chunk earns nothing."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from loyalty.common.v1.money_pb2 import Money
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.identity.v1 import order_import_pb2 as order_pb
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty_kit.timestamps import moment, timestamp

from tests.points.conftest import Points, rid
from tests.points.test_migration import carried, member_id, postings, send

pytestmark = pytest.mark.asyncio(loop_scope="session")

SHANGHAI = timezone(timedelta(hours=8))
DOUBLE_11 = datetime(2025, 11, 11, 20, 15, tzinfo=SHANGHAI)  # double points at the mall
LONG_AGO = datetime(2023, 3, 5, 12, tzinfo=SHANGHAI)  # its points expired on 1 April 2025


def past(
    member: str, amount: str, at: datetime, order_id: str = ""
) -> identity_events.ImportedOrder:
    return identity_events.ImportedOrder(
        member_id=member_id(member),
        order_id=order_id or f"legacy-{uuid.uuid4().hex[:10]}",
        amount=Money(currency_code="CNY", amount=amount),
        occurred_at=timestamp(at),
    )


def replayed(
    unit: str,
    *orders: identity_events.ImportedOrder,
    mode: order_pb.OrderImportMode.ValueType = order_pb.ORDER_IMPORT_MODE_REPLAY,
) -> identity_events.LegacyOrdersImported:
    return identity_events.LegacyOrdersImported(
        order_import=f"orderImports/{uuid.uuid4().hex[:12]}",
        unit=unit,
        mode=mode,
        orders=list(orders),
        imported_at=timestamp(datetime.now(SHANGHAI)),
    )


async def test_orders_earn_under_the_rules_in_force_when_they_happened(points: Points) -> None:
    member = await points.member()
    await send(
        points,
        replayed(
            "mall",
            past(member, "100.00", DOUBLE_11),
            past(member, "300.00", LONG_AGO),
            past(member, "50.00", datetime(2019, 6, 1, tzinfo=SHANGHAI)),  # before the programme
        ),
    )

    balance = await carried(points, member, 200)  # x2 on double 11; the rest expired
    assert balance.lifetime_earned == 500
    found = sorted(
        (p.kind, p.points, moment(p.occur_time, "occur_time"))
        for p in await postings(points, member)
    )
    assert found == [
        (pb.POSTING_KIND_EARN, 200, DOUBLE_11),
        (pb.POSTING_KIND_EARN, 300, LONG_AGO),
        (pb.POSTING_KIND_EXPIRE, -300, datetime(2025, 4, 1, tzinfo=SHANGHAI)),
    ]


async def test_an_order_earns_once_whatever_brings_it_again(points: Points) -> None:
    member, marker = await points.member(), await points.member()
    order_id = f"M-{uuid.uuid4().hex[:8]}"
    yesterday = datetime.now(SHANGHAI) - timedelta(days=1)
    first = replayed("mall", past(member, "40.00", yesterday, order_id))
    event_id = await send(points, first)
    await carried(points, member, 40)

    await send(points, first, event_id, msg_id=rid())  # the bus delivers it again
    await send(points, replayed("mall", past(member, "40.00", yesterday, order_id)))  # again
    await send(points, replayed("mall", past(marker, "1.00", yesterday)))
    await carried(points, marker, 1)

    assert (await points.balance(member)).available == 40
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # nor does the till earn it again
        await points.earn(member, "mall", "40.00", order_id=order_id)
    assert refused.value.code() is grpc.StatusCode.ALREADY_EXISTS


async def test_an_activity_only_chunk_earns_no_points(points: Points) -> None:
    member, marker = await points.member(), await points.member()
    yesterday = datetime.now(SHANGHAI) - timedelta(days=1)
    activity = order_pb.ORDER_IMPORT_MODE_ACTIVITY_ONLY
    await send(points, replayed("mall", past(member, "40.00", yesterday), mode=activity))
    await send(points, replayed("mall", past(marker, "1.00", yesterday)))
    await carried(points, marker, 1)

    assert (await points.balance(member)).available == 0
    assert await postings(points, member) == []
