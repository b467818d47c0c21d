"""The rewards catalogue (积分商城): stock reserved, points debited at the points service, the
reward issued as a coupon; a failure at any step undoes the others, a retry never charges twice."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty.benefits.v1 import benefits_service_pb2_grpc, events_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty_benefits.adapters.points import GrpcPointsBank
from loyalty_benefits.app import SPEC
from loyalty_benefits.domain.errors import PointsUnreachable
from loyalty_devstack.testing import ServiceRunner
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings

from tests.benefits.conftest import (
    APP,
    CINEMA,
    HOTEL,
    MALL,
    Benefits,
    catalogue_for_tests,
    cny,
    rid,
)
from tests.points.conftest import ADMIN
from tests.support.clients import As
from tests.support.clock import Clock
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")


def buy(member: str, reward: str, request_id: str | None = None) -> pb.RedeemRewardRequest:
    return pb.RedeemRewardRequest(member=member, reward=reward, request_id=request_id or rid())


async def available(benefits: Benefits, member: str) -> int:
    return int((await benefits.points.balance(member)).available)


async def test_points_buy_a_cinema_ticket_once_however_often_the_app_retries(
    benefits: Benefits,
) -> None:
    member = await benefits.points.member()
    await benefits.points.earn(member, "mall", "6000.00")  # 6,000 points (basic, x1)
    stock = await benefits.stock("cinema-ticket")
    request = buy(member, "cinema-ticket")
    bought = await benefits.as_(APP).RedeemReward(request)
    assert (bought.points, bought.reward.unit, bought.reward.name_en) == (
        5000,
        "cinema",
        "One cinema ticket",
    )
    coupon = bought.coupon
    assert (coupon.template_code, coupon.unit, coupon.amount.amount) == (
        "cinema-ticket",
        "cinema",
        "60.00",
    )
    assert coupon.source == f"reward:{bought.redemption_id}"
    assert await available(benefits, member) == 1000
    assert await benefits.stock("cinema-ticket") == stock - 1
    assert bought.reward.available == stock - 1  # the stock left, as ListRewards shows it

    again = await benefits.as_(APP).RedeemReward(request)
    assert again.redemption_id == bought.redemption_id and again.coupon.code == coupon.code
    assert await available(benefits, member) == 1000  # not charged twice
    assert await benefits.stock("cinema-ticket") == stock - 1
    postings = await benefits.points.as_().ListPostings(
        points_pb.ListPostingsRequest(member=member)
    )
    redeemed = [p for p in postings.postings if p.kind == points_pb.POSTING_KIND_REDEEM]
    assert [(p.points, p.unit, p.order_id, p.posting_id) for p in redeemed] == [
        (-5000, "cinema", f"reward:{bought.redemption_id}", bought.points_posting_id)
    ]
    # The ticket is used at the cinema.
    used = await benefits.as_(CINEMA).RedeemCoupon(
        pb.RedeemCouponRequest(
            name=coupon.name,
            request_id=rid(),
            unit="cinema",
            order_id="C-1",
            order_amount=cny("45.00"),
        )
    )
    assert used.discount.amount == "45.00"  # never more than the order
    (event,) = await benefits.events(events_pb2.RewardRedeemed, member.split("/")[1])
    assert (event.reward_code, event.points, event.points_posting_id, event.coupon_code) == (
        "cinema-ticket",
        5000,
        bought.points_posting_id,
        coupon.code,
    )


async def test_without_enough_points_nothing_is_taken_not_even_stock(benefits: Benefits) -> None:
    member = await benefits.points.member()
    await benefits.points.earn(member, "mall", "4999.00")  # one point short of a ticket
    stock = await benefits.stock("cinema-ticket")
    request = buy(member, "cinema-ticket")
    failure = await fails(benefits.as_(APP).RedeemReward(request))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_POINTS",
    )
    assert failure.metadata["upstream"] == "points"
    assert await benefits.stock("cinema-ticket") == stock
    assert await available(benefits, member) == 4999
    coupons = await benefits.as_(APP).ListCoupons(pb.ListCouponsRequest(member=member))
    assert list(coupons.coupons) == []
    # The same request again gets the same answer, and still takes nothing.
    failure = await fails(benefits.as_(APP).RedeemReward(request))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_POINTS",
    )
    assert await benefits.stock("cinema-ticket") == stock


async def test_the_last_one_goes_to_one_member_the_next_finds_it_out_of_stock(
    benefits: Benefits,
) -> None:
    first, second = await benefits.points.member(), await benefits.points.member()
    for member in (first, second):
        await benefits.points.earn(member, "mall", "200.00")
    await benefits.as_(APP).RedeemReward(buy(first, "test-scarce"))
    failure = await fails(benefits.as_(APP).RedeemReward(buy(second, "test-scarce")))
    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "OUT_OF_STOCK")
    assert await available(benefits, second) == 200
    assert await benefits.stock("test-scarce") == 0


async def test_six_members_racing_for_three_rewards_three_get_one(benefits: Benefits) -> None:
    members = [await benefits.points.member() for _ in range(6)]
    for member in members:
        await benefits.points.earn(member, "mall", "200.00")
    results = await asyncio.gather(
        *(benefits.as_(APP).RedeemReward(buy(m, "test-three")) for m in members),
        return_exceptions=True,
    )
    winners = [
        m for m, r in zip(members, results, strict=True) if isinstance(r, pb.RedeemRewardResponse)
    ]
    assert len(winners) == 3
    assert await benefits.stock("test-three") == 0
    balances = sorted([await available(benefits, m) for m in members])
    assert balances == [100, 100, 100, 200, 200, 200]


async def test_rewards_are_listed_with_stock_and_restocked_by_their_unit(
    benefits: Benefits,
) -> None:
    listed = await benefits.as_(APP).ListRewards(pb.ListRewardsRequest(unit="mall"))
    assert [r.code for r in listed.rewards] == ["mall-voucher-100", "test-scarce", "test-three"]
    before = await benefits.stock("mall-voucher-100")
    restocked = await benefits.as_(MALL).RestockReward(
        pb.RestockRewardRequest(reward="mall-voucher-100", quantity=5, request_id=rid())
    )
    assert restocked.reward.available == before + 5
    failure = await fails(
        benefits.as_(HOTEL).RestockReward(
            pb.RestockRewardRequest(reward="mall-voucher-100", quantity=5, request_id=rid())
        )
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")
    failure = await fails(
        benefits.as_(MALL).RestockReward(
            pb.RestockRewardRequest(reward="mall-voucher-100", quantity=0, request_id=rid())
        )
    )
    assert (failure.code, failure.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["quantity"])
    member = await benefits.points.member()
    failure = await fails(benefits.as_(APP).RedeemReward(buy(member, "golden-watch")))
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "REWARD_NOT_FOUND")


class LosesTheFirstAnswer:
    """The points service debits, but its answer never arrives (a deadline, a dropped
    connection): the first time only."""

    def __init__(self, real: GrpcPointsBank) -> None:
        self.real = real
        self.lost = 0

    async def redeem(self, *args: Any) -> str:
        posting_id = await self.real.redeem(*args)
        if not self.lost:
            self.lost += 1
            raise PointsUnreachable("DEADLINE_EXCEEDED")
        return posting_id

    async def cancel(self, *args: Any) -> None:
        await self.real.cancel(*args)


async def test_a_debit_whose_answer_was_lost_is_finished_by_the_retry_and_charged_once(
    benefits: Benefits,
    benefits_service: RunningService,
    points_service: RunningService,
    settings: Settings,
    clock: Clock,
) -> None:
    bank_settings = settings.model_copy(update={"points_target": points_service.target})
    bank = LosesTheFirstAnswer(GrpcPointsBank(bank_settings))
    runner = ServiceRunner(settings)
    try:
        flaky = await runner.start(SPEC, bank_settings, clock=clock, points_bank=bank)
        member = await benefits.points.member()
        await benefits.points.earn(member, "mall", "6000.00")
        stock = await benefits.stock("cinema-ticket")
        request = buy(member, "cinema-ticket")
        async with grpc.aio.insecure_channel(flaky.target) as channel:
            stub = As(benefits_service_pb2_grpc.BenefitsServiceStub, channel, APP)
            failure = await fails(stub.RedeemReward(request))
            assert (failure.code, failure.reason) == (
                grpc.StatusCode.UNAVAILABLE,
                "REDEMPTION_PENDING",
            )
            assert await available(benefits, member) == 1000  # debited, not yet delivered
            bought = await stub.RedeemReward(request)  # the app retries
        assert bought.coupon.template_code == "cinema-ticket"
        assert await available(benefits, member) == 1000  # once
        assert await benefits.stock("cinema-ticket") == stock - 1
    finally:
        await runner.stop_all()


class WithdrawsTheRewardMidway:
    """While the points service debits, an admin withdraws the reward from the catalogue: the
    coupon can no longer be issued after the points were taken."""

    def __init__(self, real: GrpcPointsBank, admin: Any) -> None:
        self.real = real
        self.admin = admin

    async def redeem(self, *args: Any) -> str:
        posting_id = await self.real.redeem(*args)
        withdrawn = catalogue_for_tests()
        del withdrawn.rewards[:]
        await self.admin.UpdateCatalogue(
            pb.UpdateCatalogueRequest(catalogue=withdrawn, request_id=rid())
        )
        return posting_id

    async def cancel(self, *args: Any) -> None:
        await self.real.cancel(*args)


async def test_a_reward_that_cannot_be_issued_after_the_debit_gives_points_and_stock_back(
    benefits: Benefits,
    points_service: RunningService,
    settings: Settings,
    clock: Clock,
) -> None:
    bank_settings = settings.model_copy(update={"points_target": points_service.target})
    runner = ServiceRunner(settings)
    admin = benefits.as_(ADMIN)
    try:
        bank = WithdrawsTheRewardMidway(GrpcPointsBank(bank_settings), admin)
        flaky = await runner.start(SPEC, bank_settings, clock=clock, points_bank=bank)
        member = await benefits.points.member()
        await benefits.points.earn(member, "mall", "6000.00")
        stock = await benefits.stock("cinema-ticket")
        async with grpc.aio.insecure_channel(flaky.target) as channel:
            stub = As(benefits_service_pb2_grpc.BenefitsServiceStub, channel, APP)
            failure = await fails(stub.RedeemReward(buy(member, "cinema-ticket")))
        assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "REWARD_NOT_FOUND")
        assert await available(benefits, member) == 6000  # the debit was cancelled
        postings = await benefits.points.as_().ListPostings(
            points_pb.ListPostingsRequest(member=member)
        )
        assert [(p.kind, p.points) for p in postings.postings][:2] == [
            (points_pb.POSTING_KIND_REDEMPTION_CANCEL, 5000),
            (points_pb.POSTING_KIND_REDEEM, -5000),
        ]
    finally:
        await admin.UpdateCatalogue(
            pb.UpdateCatalogueRequest(catalogue=catalogue_for_tests(), request_id=rid())
        )
        await runner.stop_all()
    assert await benefits.stock("cinema-ticket") == stock  # the unit reserved came back


async def test_a_reward_whose_coupon_can_no_longer_be_issued_is_refused_before_any_debit(
    benefits: Benefits,
) -> None:
    expired = catalogue_for_tests()
    template = next(t for t in expired.coupon_templates if t.code == "cinema-ticket")
    template.valid_until.FromJsonString("2020-01-01T00:00:00Z")
    admin = benefits.as_(ADMIN)
    member = await benefits.points.member()
    await benefits.points.earn(member, "mall", "6000.00")
    stock = await benefits.stock("cinema-ticket")
    await admin.UpdateCatalogue(pb.UpdateCatalogueRequest(catalogue=expired, request_id=rid()))
    try:
        failure = await fails(benefits.as_(APP).RedeemReward(buy(member, "cinema-ticket")))
    finally:
        await admin.UpdateCatalogue(
            pb.UpdateCatalogueRequest(catalogue=catalogue_for_tests(), request_id=rid())
        )
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "COUPON_TEMPLATE_EXPIRED",
    )
    postings = await benefits.points.as_().ListPostings(
        points_pb.ListPostingsRequest(member=member)
    )
    assert [p.kind for p in postings.postings] == [points_pb.POSTING_KIND_EARN]
    assert await benefits.stock("cinema-ticket") == stock


async def test_the_same_purchase_sent_five_times_at_once_is_one_purchase(
    benefits: Benefits,
) -> None:
    member = await benefits.points.member()
    await benefits.points.earn(member, "mall", "6000.00")
    stock = await benefits.stock("cinema-ticket")
    request = buy(member, "cinema-ticket")
    results = await asyncio.gather(*(benefits.as_(APP).RedeemReward(request) for _ in range(5)))
    assert len({r.redemption_id for r in results}) == 1
    assert len({r.coupon.code for r in results}) == 1
    assert await available(benefits, member) == 1000
    assert await benefits.stock("cinema-ticket") == stock - 1
    failure = await fails(
        benefits.as_(APP).RedeemReward(buy(member, "mall-voucher-100", request.request_id))
    )
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )
