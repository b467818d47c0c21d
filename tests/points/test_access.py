"""Who may move points: a unit credits and spends only for itself, with the scope for it, and
only with a credential (these services trust no caller headers in the tests, as deployed)."""

from __future__ import annotations

import grpc
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty_kit.caller import Caller

from tests.points.conftest import ADMIN, Points, line, pos, rid
from tests.support.rpc import fails

HOTEL_FRONT_DESK = Caller(unit="hotel", client_id="hotel-desk", scopes=frozenset({"earn"}))


async def test_a_unit_cannot_earn_or_redeem_for_another(points: Points) -> None:
    member = await points.member()
    earn = pb.EarnPointsRequest(
        member=member, request_id=rid(), unit="hotel", order_id="o-1", lines=[line("100.00")]
    )
    refused = await fails(points.as_(pos("mall")).EarnPoints(earn))
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")
    assert refused.metadata == {"unit": "hotel", "caller_unit": "mall"}
    await points.as_(pos("hotel")).EarnPoints(earn)
    spend = pb.RedeemPointsRequest(member=member, request_id=rid(), unit="hotel", points=10)
    refused = await fails(points.as_(pos("cinema")).RedeemPoints(spend))
    assert refused.reason == "UNIT_MISMATCH"
    # Nothing moved for the refused calls: 200 earned (2 a yuan at the hotel, pending until
    # the stay is confirmed).
    balance = await points.balance(member)
    assert (balance.available, balance.pending) == (0, 200)


async def test_each_move_needs_its_scope(points: Points) -> None:
    member = await points.member()
    await points.earn(member, "hotel", "100.00", order_id="stay")
    desk = points.as_(HOTEL_FRONT_DESK)
    spend = pb.RedeemPointsRequest(member=member, request_id=rid(), unit="hotel", points=10)
    refused = await fails(desk.RedeemPoints(spend))
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED")
    assert refused.metadata == {"scope": "redeem"}
    gift = pb.TransferPointsRequest(member=member, to_member=member, request_id=rid(), points=1)
    assert (await fails(desk.TransferPoints(gift))).metadata == {"scope": "redeem"}
    settlement = await fails(desk.GetSettlement(pb.GetSettlementRequest()))
    assert settlement.metadata == {"scope": "admin"}
    # The earn scope confirms its own unit's orders; an admin acts for any unit.
    confirm = pb.ConfirmOrderRequest(member=member, request_id=rid(), unit="hotel", order_id="stay")
    assert (await desk.ConfirmOrder(confirm)).activated_points == 200
    spend.unit = "cinema"
    assert (await points.as_(ADMIN).RedeemPoints(spend)).posting.points == -10


async def test_a_call_without_a_token_is_unauthenticated(points: Points) -> None:
    stub = points_service_pb2_grpc.PointsServiceStub(points.points_channel)
    member = await points.member()
    for metadata in ((), pos("hotel").metadata()):  # caller headers alone are not trusted
        refused = await fails(
            stub.GetBalance(pb.GetBalanceRequest(member=member), metadata=metadata, timeout=5)
        )
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "TOKEN_MISSING",
        )
