"""Spending, refunds, adjustments, expiry and settlement over a real channel."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty.points.v1 import points_service_pb2_grpc

from tests.points.conftest import ADMIN, DESK, HOTEL, Points, at, pos, rid
from tests.support.clients import As
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def redeem(
    points: Points, member: str, amount: int, unit: str = "cinema"
) -> pb.RedeemPointsResponse:
    response: pb.RedeemPointsResponse = await points.as_().RedeemPoints(
        pb.RedeemPointsRequest(member=member, request_id=rid(), unit=unit, points=amount)
    )
    return response


async def test_points_earned_at_the_mall_are_spent_at_the_cinema_oldest_first(
    points: Points,
) -> None:
    member = await points.member()
    await points.earn(member, "mall", "300.00", occur="2025-01-05T10:00:00+08:00")
    await points.earn(member, "mall", "500.00", occur="2026-03-01T10:00:00+08:00")
    spent = await redeem(points, member, 400)
    assert spent.posting.points == -400
    assert (spent.value.currency_code, spent.value.amount) == ("CNY", "4.00")
    assert spent.balance.available == 400
    # The older lot (300) went first: what is left expires with the newer one.
    assert (await points.balance(member)).available == 400
    failure = await fails(redeem(points, member, 401))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_POINTS",
    )
    assert failure.metadata["available"] == "400"
    for bad in (0, -5):
        failure = await fails(redeem(points, member, bad))
        assert failure.fields == ["points"]


async def test_two_hundred_concurrent_redemptions_against_a_balance_for_one_hundred(
    points: Points,
) -> None:
    member = await points.member()
    await points.earn(member, "mall", "1000.00")
    outcomes = await asyncio.gather(
        *(redeem(points, member, 10) for _ in range(200)), return_exceptions=True
    )
    succeeded = [o for o in outcomes if isinstance(o, pb.RedeemPointsResponse)]
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(succeeded) == 100 and len(refused) == 100
    assert {e.code() for e in refused} == {grpc.StatusCode.FAILED_PRECONDITION}
    assert (await points.balance(member)).available == 0


async def test_a_partial_refund_takes_back_exactly_its_lines_points(points: Points) -> None:
    member = await points.member()
    earned = await points.earn(member, "mall", "100.00", "250.50", "49.50", order_id="M-1")
    assert earned.posting.points == 400
    # 100 + 250.5 + 49.5: the spare point of the two halves goes to the earlier line.
    allocated = {p.line_id: p.points for p in earned.posting.breakdown.lines}
    assert allocated == {"1": 100, "2": 251, "3": 49}
    refund = await points.as_().ReverseEarn(
        pb.ReverseEarnRequest(
            member=member, request_id=rid(), unit="mall", order_id="M-1", line_ids=["2"]
        )
    )
    assert refund.posting.points == -251
    assert refund.posting.related_posting_id == earned.posting.posting_id
    assert refund.balance.available == 149
    failure = await fails(
        points.as_().ReverseEarn(
            pb.ReverseEarnRequest(
                member=member, request_id=rid(), unit="mall", order_id="M-1", line_ids=["2"]
            )
        )
    )
    assert failure.reason == "ALREADY_REVERSED"
    rest = await points.as_().ReverseEarn(
        pb.ReverseEarnRequest(member=member, request_id=rid(), unit="mall", order_id="M-1")
    )
    assert rest.posting.points == -149 and rest.balance.available == 0
    failure = await fails(
        points.as_().ReverseEarn(
            pb.ReverseEarnRequest(
                member=member, request_id=rid(), unit="mall", order_id="M-1", line_ids=["9"]
            )
        )
    )
    assert failure.fields == ["line_ids[0]"]


async def test_a_refund_inside_the_pending_window_cancels_the_pending_points(
    points: Points,
) -> None:
    member = await points.member()
    await points.earn(member, "hotel", "500.00", order_id="H-1")
    assert (await points.balance(member)).pending == 1000
    refund = await points.as_().ReverseEarn(
        pb.ReverseEarnRequest(member=member, request_id=rid(), unit="hotel", order_id="H-1")
    )
    assert refund.posting.points == -1000
    assert (refund.balance.pending, refund.balance.available) == (0, 0)


async def test_refunding_points_already_spent_records_what_could_not_be_recovered(
    points: Points,
) -> None:
    member = await points.member()
    await points.earn(member, "mall", "100.00", order_id="M-2")
    await redeem(points, member, 70)
    refund = await points.as_().ReverseEarn(
        pb.ReverseEarnRequest(member=member, request_id=rid(), unit="mall", order_id="M-2")
    )
    assert refund.posting.points == -30
    assert refund.posting.unrecovered_points == 70
    assert refund.balance.available == 0


async def test_cancelling_a_redemption_returns_its_points(points: Points) -> None:
    member = await points.member()
    await points.earn(member, "mall", "100.00")
    spent = await redeem(points, member, 60)
    cancel = pb.CancelRedemptionRequest(
        member=member, request_id=rid(), posting_id=spent.posting.posting_id
    )
    # Only the unit that took the points (or an admin) gives them back.
    refused = await fails(points.as_(pos("mall")).CancelRedemption(cancel))
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")
    assert refused.metadata == {"unit": "cinema", "caller_unit": "mall"}
    cinema = points.as_(pos("cinema"))
    cancelled = await cinema.CancelRedemption(cancel)
    assert (cancelled.posting.points, cancelled.expired_points) == (60, 0)
    assert cancelled.balance.available == 100
    cancel.request_id = rid()
    failure = await fails(cinema.CancelRedemption(cancel))
    assert failure.reason == "REDEMPTION_ALREADY_CANCELLED"


async def test_points_of_a_lot_that_expired_since_the_redemption_are_not_returned(
    points: Points,
) -> None:
    member = await points.member()
    # Earned 2024-11-20: expires at the end of November 2026 (24 months after).
    old = await points.earn(member, "mall", "100.00", occur="2024-11-20T10:00:00+08:00")
    await points.earn(member, "mall", "50.00")
    spent = await redeem(points, member, 120)  # 100 from the old lot, 20 from the new one
    end_of_month = at("2026-12-01T00:00:00+08:00")
    expired = await points.as_(ADMIN).RunExpiry(pb.RunExpiryRequest(as_of=end_of_month))
    assert expired.points_expired >= 0  # the old lot had nothing left to expire
    assert old.posting.points == 100
    # Cancel after the old lot's expiry: its 100 points would have expired; the 20 return.
    expiry_passed = datetime(2026, 12, 1, tzinfo=UTC) - datetime.now(UTC)
    points.service.root.clock.advance(seconds=expiry_passed.total_seconds() + 60)
    try:
        cancelled = await points.as_(pos("cinema")).CancelRedemption(
            pb.CancelRedemptionRequest(
                member=member, request_id=rid(), posting_id=spent.posting.posting_id
            )
        )
    finally:
        points.service.root.clock.reset()
    # All 120 come back to their lots (the redemption is undone) and the old lot's 100 expire
    # again at once, on a posting of their own.
    assert (cancelled.posting.points, cancelled.expired_points) == (120, 100)
    assert cancelled.balance.available == 50
    statement = await points.as_().ListPostings(
        pb.ListPostingsRequest(member=member, kind=pb.POSTING_KIND_EXPIRE)
    )
    assert [(p.points, p.related_posting_id) for p in statement.postings] == [
        (-100, cancelled.posting.posting_id)
    ]


async def test_expiry_is_by_lot_and_running_it_twice_changes_nothing(points: Points) -> None:
    member = await points.member()
    await points.earn(member, "mall", "80.00", occur="2024-08-15T10:00:00+08:00")  # expired
    await points.earn(member, "mall", "20.00", occur="2026-01-15T10:00:00+08:00")
    soon = await points.as_().GetBalance(pb.GetBalanceRequest(member=member))
    assert soon.balance.expiring_soon == 80  # still on the books until the job runs
    first = await points.as_(ADMIN).RunExpiry(pb.RunExpiryRequest(chunk_size=2))
    assert first.points_expired >= 80
    again = await points.as_(ADMIN).RunExpiry(pb.RunExpiryRequest())
    assert again.points_expired == 0
    balance = await points.balance(member)
    assert (balance.available, balance.expiring_soon) == (20, 0)
    statement = await points.as_().ListPostings(
        pb.ListPostingsRequest(member=member, kind=pb.POSTING_KIND_EXPIRE)
    )
    assert [p.points for p in statement.postings] == [-80]


async def test_adjustments_need_their_scope_and_a_reason(points: Points) -> None:
    member = await points.member()
    request = pb.AdjustPointsRequest(
        member=member, request_id=rid(), unit="mall", points=500, reason="goodwill: lost receipt"
    )
    failure = await fails(points.as_(HOTEL).AdjustPoints(request))
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED")
    added = await points.as_(DESK).AdjustPoints(request)
    assert added.balance.available == 500
    taken = await points.as_(DESK).AdjustPoints(
        pb.AdjustPointsRequest(
            member=member, request_id=rid(), unit="mall", points=-200, reason="duplicate goodwill"
        )
    )
    assert taken.balance.available == 300
    failure = await fails(
        points.as_(DESK).AdjustPoints(
            pb.AdjustPointsRequest(member=member, request_id=rid(), unit="mall", points=0)
        )
    )
    assert failure.fields == ["points", "reason"]


async def test_the_statement_pages_and_filters(points: Points) -> None:
    member = await points.member()
    for amount in ("10.00", "20.00", "30.00"):
        await points.earn(member, "mall", amount)
    await points.earn(member, "cinema", "10.00")
    await redeem(points, member, 5)
    page = await points.as_().ListPostings(pb.ListPostingsRequest(member=member, page_size=2))
    assert [p.kind for p in page.postings] == [pb.POSTING_KIND_REDEEM, pb.POSTING_KIND_EARN]
    rest = await points.as_().ListPostings(
        pb.ListPostingsRequest(member=member, page_size=2, page_token=page.next_page_token)
    )
    assert len(rest.postings) == 2 and rest.next_page_token
    mall = await points.as_().ListPostings(pb.ListPostingsRequest(member=member, unit="mall"))
    assert [p.points for p in mall.postings] == [30, 20, 10]
    failure = await fails(
        points.as_().ListPostings(
            pb.ListPostingsRequest(member=member, unit="cinema", page_token=page.next_page_token)
        )
    )
    assert failure.fields == ["page_token"]


async def test_settlement_reconciles_with_the_ledger(points: Points) -> None:
    start = Timestamp()
    start.FromDatetime(datetime.now(UTC) - timedelta(seconds=1))
    member = await points.member()
    await points.earn(member, "mall", "1000.00")
    await points.earn(member, "hotel", "100.00", order_id="S-H")
    await points.as_().ConfirmOrder(
        pb.ConfirmOrderRequest(member=member, request_id=rid(), unit="hotel", order_id="S-H")
    )
    await redeem(points, member, 1100, unit="cinema")  # 1000 mall points + 100 hotel points
    end = Timestamp()
    end.FromDatetime(datetime.now(UTC) + timedelta(seconds=1))
    report = await points.as_(ADMIN).GetSettlement(
        pb.GetSettlementRequest(start_time=start, end_time=end)
    )
    units = {u.unit: u for u in report.units}
    flows = {(f.earned_unit, f.redeemed_unit): f.points for f in report.flows}
    assert flows[("mall", "cinema")] >= 1000 and flows[("hotel", "cinema")] >= 100
    assert units["cinema"].points_redeemed >= 1100
    assert units["cinema"].value_redeemed.currency_code == "CNY"
    issued = sum(u.points_issued for u in report.units)
    redeemed = sum(u.points_redeemed for u in report.units)
    expired = sum(u.points_expired for u in report.units)
    forfeited = sum(u.points_forfeited for u in report.units)
    # Other tests run in the same period: whatever they did, the figures reconcile.
    merges = report.ledger_points - (issued - redeemed - expired - forfeited)
    assert merges == 0


async def test_suspended_and_merged_members_learned_from_identity_events(points: Points) -> None:
    survivor, absorbed = await points.member(), await points.member()
    await points.earn(absorbed, "mall", "120.00")
    await points.earn(absorbed, "hotel", "10.00")  # pending 20
    await points.earn(survivor, "mall", "5.00")
    await points.identity().MergeMembers(
        identity_pb.MergeMembersRequest(survivor=survivor, absorbed=absorbed, request_id=rid())
    )
    for _ in range(200):
        balance = await points.balance(survivor)
        if balance.available == 125:
            break
        await asyncio.sleep(0.05)
    assert (balance.available, balance.pending) == (125, 20)
    failure = await fails(points.earn(absorbed, "mall", "1.00"))
    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "MEMBER_MERGED")
    assert failure.metadata["merged_into"] == survivor.split("/")[1]

    await points.identity().SuspendMember(
        identity_pb.SuspendMemberRequest(name=survivor, request_id=rid(), reason="dispute")
    )
    for _ in range(200):
        try:
            await redeem(points, survivor, 1)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            break
        await asyncio.sleep(0.05)
    failure = await fails(points.earn(survivor, "mall", "1.00"))
    assert failure.reason == "MEMBER_SUSPENDED"


async def test_a_cancelled_redemption_leaves_the_settlement_as_if_it_never_happened(
    points: Points,
) -> None:
    """Points earned at the mall long ago (already past their expiry), spent at the cinema, the
    expiry job run, the redemption cancelled: the cinema redeemed nothing, no points flowed from
    the mall to the cinema, and the mall's points expired."""
    member = await points.member()
    start = Timestamp()
    start.FromDatetime(datetime.now(UTC))  # this test's window only: the service's clock
    await points.earn(member, "mall", "400.00", occur="2024-06-15T10:00:00+08:00")
    spent = await redeem(points, member, 400, unit="cinema")
    await points.as_(ADMIN).RunExpiry(pb.RunExpiryRequest())
    cancelled = await points.as_(pos("cinema")).CancelRedemption(
        pb.CancelRedemptionRequest(
            member=member, request_id=rid(), posting_id=spent.posting.posting_id
        )
    )
    assert (cancelled.expired_points, cancelled.balance.available) == (400, 0)
    end = Timestamp()
    end.FromDatetime(datetime.now(UTC) + timedelta(milliseconds=1))
    report = await points.as_(ADMIN).GetSettlement(
        pb.GetSettlementRequest(start_time=start, end_time=end)
    )
    units = {u.unit: u for u in report.units}
    flows = {(f.earned_unit, f.redeemed_unit): f.points for f in report.flows}
    assert ("mall", "cinema") not in flows
    assert units["cinema"].points_redeemed == 0 if "cinema" in units else True
    assert (units["mall"].points_issued, units["mall"].points_expired) == (400, 400)
    assert report.ledger_points == 0


async def test_settlement_without_a_programme_is_refused_not_internal(
    services: Any, make_settings: Any, run_id: str
) -> None:
    """Points are valued in the programme's base currency: with no programme yet there is none,
    and the answer says so (FAILED_PRECONDITION / NO_PROGRAMME), not INTERNAL."""
    from loyalty_points.app import SPEC

    bare = await services.start(SPEC, make_settings(database_prefix=f"{run_id}_bare_"))
    async with grpc.aio.insecure_channel(bare.target) as channel:
        stub = As(points_service_pb2_grpc.PointsServiceStub, channel, ADMIN)
        failure = await fails(
            stub.GetSettlement(
                pb.GetSettlementRequest(
                    start_time=at("2026-01-01T00:00:00Z"), end_time=at("2026-02-01T00:00:00Z")
                )
            )
        )
    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NO_PROGRAMME")
