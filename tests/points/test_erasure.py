"""An erased member's points: forfeited, available and pending alike, and reported by the
settlement under the units that issued them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty_points.service_layer import consumers
from loyalty_points.service_layer.uow import PointsUnitOfWork

from tests.points.conftest import ADMIN, Points, rid
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")


def stamp(moment: datetime) -> Timestamp:
    found = Timestamp()
    found.FromDatetime(moment)
    return found


async def erase(points: Points, member: str) -> None:
    """Erase a member who holds points, once points has forfeited them."""
    await points.identity().EraseMember(
        identity_pb.EraseMemberRequest(name=member, request_id=rid(), reason="member request")
    )
    for _ in range(200):  # the erasure reaches points by identity's event
        if await forfeits(points, member):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("points never forfeited the erased member's balance")


async def forfeits(points: Points, member: str) -> list[pb.Posting]:
    listed = await points.as_().ListPostings(
        pb.ListPostingsRequest(member=member, kind=pb.POSTING_KIND_ERASURE_FORFEIT)
    )
    return list(listed.postings)


async def test_an_erased_members_points_are_forfeited_under_the_units_that_issued_them(
    points: Points,
) -> None:
    member = await points.member()
    start = stamp(datetime.now(UTC))  # this test's window only: the service's clock
    await points.earn(member, "mall", "300.00")  # 300 available
    await points.earn(member, "hotel", "100.00")  # 200, pending for 7 days
    assert (await points.balance(member)).pending == 200

    await erase(points, member)

    balance = await points.balance(member)
    assert (balance.available, balance.pending) == (0, 0)
    [forfeit] = await forfeits(points, member)
    assert (forfeit.points, forfeit.unit, forfeit.reason) == (-500, "group", "member erased")
    end = stamp(datetime.now(UTC) + timedelta(milliseconds=1))
    report = await points.as_(ADMIN).GetSettlement(
        pb.GetSettlementRequest(start_time=start, end_time=end)
    )
    units = {u.unit: u for u in report.units}
    assert "group" not in units
    assert (units["mall"].points_issued, units["mall"].points_forfeited) == (300, 300)
    assert (units["hotel"].points_issued, units["hotel"].points_forfeited) == (200, 200)
    assert units["mall"].points_expired == units["hotel"].points_expired == 0
    assert report.ledger_points == 0  # issued - redeemed - expired - forfeited


async def test_a_redelivered_erasure_forfeits_nothing_more(points: Points) -> None:
    member = await points.member()
    await points.earn(member, "cinema", "100.00")  # 150 points
    await erase(points, member)
    assert [p.points for p in await forfeits(points, member)] == [-150]

    # The event again (identity's outbox may publish it twice, under a new id after a crash).
    context = points.service.context
    assert context.sessions is not None
    member_id = member.split("/")[1]
    async with PointsUnitOfWork(context.sessions, context.settings.event_namespace) as uow:
        again = await consumers.on_member_erased(uow, member_id, datetime.now(UTC))
        await uow.commit()
    assert again == 0
    assert [p.points for p in await forfeits(points, member)] == [-150]
    assert (await points.balance(member)).available == 0


async def test_an_erased_members_pending_points_never_activate(points: Points) -> None:
    member = await points.member()
    await points.earn(member, "hotel", "50.00", order_id="ERASED-STAY")  # 100 pending
    await erase(points, member)
    confirmed = await points.as_().ConfirmOrder(
        pb.ConfirmOrderRequest(
            member=member, request_id=rid(), unit="hotel", order_id="ERASED-STAY"
        )
    )
    assert confirmed.activated_points == 0
    await points.as_(ADMIN).RunPendingActivation(
        pb.RunPendingActivationRequest(as_of=stamp(datetime.now(UTC) + timedelta(days=8)))
    )
    balance = await points.balance(member)
    assert (balance.available, balance.pending) == (0, 0)
    refused = await fails(
        points.as_().RedeemPoints(
            pb.RedeemPointsRequest(member=member, request_id=rid(), unit="cinema", points=1)
        )
    )
    assert (refused.code, refused.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "MEMBER_ERASED")
