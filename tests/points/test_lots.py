"""A member's lots over a real channel: what each earn gave and what is left of it, soonest
expiry first, in AIP-158 pages tied to their filters."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty_kit.caller import Caller

from tests.points.conftest import ADMIN, Points, pos, rid
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

READER = Caller(unit="cinema", client_id="cinema-reader", scopes=frozenset())


def days_ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


async def all_lots(points: Points, request: pb.ListLotsRequest) -> list[pb.Lot]:
    found: list[pb.Lot] = []
    for _ in range(20):
        page = await points.as_(READER).ListLots(request)
        assert len(page.lots) <= max(request.page_size, 1)
        found.extend(page.lots)
        if not page.next_page_token:
            return found
        request.page_token = page.next_page_token
    raise AssertionError("the pages never ended")


async def test_lots_come_soonest_expiry_first_with_what_is_left_of_them(points: Points) -> None:
    member = await points.member()
    await points.earn(member, "mall", "300.00", occur=days_ago(200))
    await points.earn(member, "mall", "500.00", occur=days_ago(100))
    await points.earn(member, "cinema", "200.00", occur=days_ago(40))
    await points.earn(member, "hotel", "100.00")  # pending until the stay is confirmed
    await points.as_(pos("cinema")).RedeemPoints(
        pb.RedeemPointsRequest(member=member, request_id=rid(), unit="cinema", points=350)
    )

    lots = await all_lots(points, pb.ListLotsRequest(member=member, page_size=1))
    expiries = [lot.expire_time.ToDatetime() for lot in lots]
    assert expiries == sorted(expiries)
    assert [(lot.unit, lot.state) for lot in lots] == [
        ("mall", pb.LOT_STATE_OPEN),  # the oldest lot's 300 are spent: only the newer is left
        ("cinema", pb.LOT_STATE_OPEN),
        ("hotel", pb.LOT_STATE_PENDING),
    ]
    mall, cinema, hotel = lots
    assert (mall.points, mall.remaining_points) == (500, 450)
    assert cinema.remaining_points == cinema.points > 0
    assert hotel.points == hotel.remaining_points == 200
    assert hotel.HasField("available_time")
    assert mall.name == f"{member}/lots/{mall.lot_id}"
    assert uuid.UUID(mall.posting_id)
    balance = await points.balance(member)
    assert sum(lot.remaining_points for lot in lots) == balance.available + balance.pending

    # With the lots that hold nothing: the spent one comes first (it expires soonest).
    every = await all_lots(points, pb.ListLotsRequest(member=member, page_size=2, show_empty=True))
    assert [lot.lot_id for lot in every[1:]] == [lot.lot_id for lot in lots]
    assert (every[0].unit, every[0].points, every[0].remaining_points) == ("mall", 300, 0)

    # Filters: a unit's lots; lots expiring before a time.
    only_mall = await all_lots(points, pb.ListLotsRequest(member=member, unit="mall"))
    assert [lot.lot_id for lot in only_mall] == [mall.lot_id]
    before = pb.ListLotsRequest(member=member, page_size=1, show_empty=True)
    before.expire_before.CopyFrom(cinema.expire_time)
    assert [lot.lot_id for lot in await all_lots(points, before)] == [
        every[0].lot_id,
        mall.lot_id,
    ]


async def test_lot_pages_are_tied_to_their_filters_and_their_member(points: Points) -> None:
    member = await points.member()
    for unit in ("mall", "cinema"):
        await points.earn(member, unit, "100.00", occur=days_ago(10))
    first = await points.as_(READER).ListLots(pb.ListLotsRequest(member=member, page_size=1))
    assert len(first.lots) == 1 and first.next_page_token
    other = await points.member()
    for request in (
        pb.ListLotsRequest(member=member, unit="mall", page_token=first.next_page_token),
        pb.ListLotsRequest(member=other, page_token=first.next_page_token),
        pb.ListLotsRequest(member=member, page_token="bm90IGEgdG9rZW4"),
    ):
        refused = await fails(points.as_(READER).ListLots(request))
        assert (refused.code, refused.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["page_token"])
    refused = await fails(
        points.as_(READER).ListLots(pb.ListLotsRequest(member=member, page_size=-1))
    )
    assert refused.fields == ["page_size"]
    # A member no one registered; a member who has not earned yet has no lots.
    missing = f"members/{uuid.uuid4()}"
    refused = await fails(points.as_(ADMIN).ListLots(pb.ListLotsRequest(member=missing)))
    assert refused.code == grpc.StatusCode.NOT_FOUND
    empty = await points.as_(ADMIN).ListLots(pb.ListLotsRequest(member=other))
    assert (list(empty.lots), empty.next_page_token) == ([], "")
    stamp = Timestamp()
    stamp.FromDatetime(datetime(2000, 1, 1))
    old = await points.as_(READER).ListLots(pb.ListLotsRequest(member=member, expire_before=stamp))
    assert list(old.lots) == []
