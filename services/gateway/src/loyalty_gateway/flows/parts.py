"""The parts a checkout pays with: a coupon, a benefit, points. Each is taken from its
service, looked up by the request id that took it (never taking anything), and given back;
the checkout saga and the refund handle them alike through these three.

Taken in the order of `PARTS` (coupon, benefit, points), given back in the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import grpc
from google.protobuf.message import Message
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty.points.v1 import points_service_pb2 as points_pb

from loyalty_gateway.adapters.checkout_log import Attempt
from loyalty_gateway.adapters.services import Call, Services, reason_of

# A give-back that finds the part already given back is done.
ALREADY_GIVEN_BACK = {
    "REDEMPTION_ALREADY_CANCELLED",
    "CONSUMPTION_ALREADY_RELEASED",
    "COUPON_NOT_REDEEMED",
}


class Part(Protocol):
    @property
    def name(self) -> str: ...

    def wanted(self, request: pb.RedeemAtCheckoutRequest) -> bool: ...

    async def take(self, services: Services, attempt: Attempt, call: Call) -> Message:
        """Take the part (or, asked again by the same request id, learn what was taken)."""

    async def lookup(self, services: Services, attempt: Attempt, call: Call) -> Message | None:
        """What the attempt took, without taking anything; None if it took nothing."""

    async def give_back_once(
        self, services: Services, taken: Message, member: str, request_id: str, why: str, call: Call
    ) -> Message: ...

    def paid(self, checkout: pb.RedeemAtCheckoutResponse) -> Message | None:
        """What this part took at a completed checkout, in the shape `take` answers."""

    def into(self, response: pb.RedeemAtCheckoutResponse, taken: Message) -> None:
        """Write what was taken into the checkout's answer."""

    def given_into(self, response: pb.RefundPurchaseResponse, given: Message) -> None:
        """Write what was given back into a refund's answer."""


@dataclass(frozen=True)
class CouponPart:
    name: str = "coupon"

    def wanted(self, request: pb.RedeemAtCheckoutRequest) -> bool:
        return bool(request.coupon)

    async def take(self, services: Services, attempt: Attempt, call: Call) -> Message:
        return await services.redeem_coupon(
            call,
            benefits_pb.RedeemCouponRequest(
                name=_coupon(attempt),
                request_id=attempt.step_id(self.name),
                unit=attempt.unit,
                order_id=attempt.order_id,
                order_amount=attempt.request.order_amount,
            ),
        )

    async def lookup(self, services: Services, attempt: Attempt, call: Call) -> Message | None:
        return await services.lookup_coupon_redemption(
            call, _coupon(attempt), attempt.step_id(self.name)
        )

    async def give_back_once(
        self, services: Services, taken: Message, member: str, request_id: str, why: str, call: Call
    ) -> Message:
        assert isinstance(taken, benefits_pb.RedeemCouponResponse)
        return await services.release_coupon(call, taken.coupon.name, request_id, why)

    def paid(self, checkout: pb.RedeemAtCheckoutResponse) -> Message | None:
        if not checkout.HasField("coupon"):
            return None
        return benefits_pb.RedeemCouponResponse(coupon=checkout.coupon)

    def into(self, response: pb.RedeemAtCheckoutResponse, taken: Message) -> None:
        assert isinstance(taken, benefits_pb.RedeemCouponResponse)
        response.coupon.CopyFrom(taken.coupon)
        response.coupon_discount.CopyFrom(taken.discount)

    def given_into(self, response: pb.RefundPurchaseResponse, given: Message) -> None:
        assert isinstance(given, benefits_pb.ReleaseCouponResponse)
        response.coupon.CopyFrom(given.coupon)


@dataclass(frozen=True)
class BenefitPart:
    name: str = "benefit"

    def wanted(self, request: pb.RedeemAtCheckoutRequest) -> bool:
        return bool(request.benefit)

    async def take(self, services: Services, attempt: Attempt, call: Call) -> Message:
        return await services.consume_benefit(
            call,
            benefits_pb.ConsumeBenefitRequest(
                member=attempt.member,
                request_id=attempt.step_id(self.name),
                benefit=attempt.request.benefit,
                unit=attempt.unit,
                order_id=attempt.order_id,
            ),
        )

    async def lookup(self, services: Services, attempt: Attempt, call: Call) -> Message | None:
        return await services.lookup_consumption(call, attempt.member, attempt.step_id(self.name))

    async def give_back_once(
        self, services: Services, taken: Message, member: str, request_id: str, why: str, call: Call
    ) -> Message:
        assert isinstance(taken, benefits_pb.ConsumeBenefitResponse)
        return await services.release_consumption(call, taken.consumption.name, request_id, why)

    def paid(self, checkout: pb.RedeemAtCheckoutResponse) -> Message | None:
        if not checkout.HasField("consumption"):
            return None
        return benefits_pb.ConsumeBenefitResponse(consumption=checkout.consumption)

    def into(self, response: pb.RedeemAtCheckoutResponse, taken: Message) -> None:
        assert isinstance(taken, benefits_pb.ConsumeBenefitResponse)
        response.consumption.CopyFrom(taken.consumption)

    def given_into(self, response: pb.RefundPurchaseResponse, given: Message) -> None:
        assert isinstance(given, benefits_pb.ReleaseConsumptionResponse)
        response.consumption.CopyFrom(given.consumption)


@dataclass(frozen=True)
class PointsPart:
    name: str = "points"

    def wanted(self, request: pb.RedeemAtCheckoutRequest) -> bool:
        return request.points > 0

    async def take(self, services: Services, attempt: Attempt, call: Call) -> Message:
        return await services.redeem_points(
            call,
            points_pb.RedeemPointsRequest(
                member=attempt.member,
                request_id=attempt.step_id(self.name),
                unit=attempt.unit,
                channel=attempt.request.channel,
                points=attempt.request.points,
                order_id=attempt.order_id,
            ),
        )

    async def lookup(self, services: Services, attempt: Attempt, call: Call) -> Message | None:
        return await services.lookup_redemption(call, attempt.member, attempt.step_id(self.name))

    async def give_back_once(
        self, services: Services, taken: Message, member: str, request_id: str, why: str, call: Call
    ) -> Message:
        assert isinstance(taken, points_pb.RedeemPointsResponse)
        return await services.cancel_redemption(
            call, member, request_id, taken.posting.posting_id, why
        )

    def paid(self, checkout: pb.RedeemAtCheckoutResponse) -> Message | None:
        if not checkout.HasField("points_posting"):
            return None
        return points_pb.RedeemPointsResponse(posting=checkout.points_posting)

    def into(self, response: pb.RedeemAtCheckoutResponse, taken: Message) -> None:
        assert isinstance(taken, points_pb.RedeemPointsResponse)
        response.points_posting.CopyFrom(taken.posting)
        response.points_value.CopyFrom(taken.value)
        response.balance.CopyFrom(taken.balance)

    def given_into(self, response: pb.RefundPurchaseResponse, given: Message) -> None:
        assert isinstance(given, points_pb.CancelRedemptionResponse)
        response.points_returned.CopyFrom(given.posting)
        response.balance.CopyFrom(given.balance)


COUPON, BENEFIT, POINTS = CouponPart(), BenefitPart(), PointsPart()
PARTS: tuple[Part, ...] = (COUPON, BENEFIT, POINTS)  # taken in this order
BY_NAME: dict[str, Part] = {part.name: part for part in PARTS}
GIVE_BACK_SECONDS = 10.0


def requested(request: pb.RedeemAtCheckoutRequest) -> list[Part]:
    """The parts a checkout asks for, in the order they are taken."""
    return [part for part in PARTS if part.wanted(request)]


async def give_back(
    services: Services,
    part: Part,
    taken: Message,
    member: str,
    request_id: str,
    md: tuple[tuple[str, str], ...],
    why: str = "checkout not completed",
) -> Message | None:
    """Give one taken part back: the service's answer, or None if it was back already."""
    try:
        call = Call.each(md, GIVE_BACK_SECONDS)
        return await part.give_back_once(services, taken, member, request_id, why, call)
    except grpc.aio.AioRpcError as error:
        if reason_of(error) not in ALREADY_GIVEN_BACK:
            raise
        return None


def _coupon(attempt: Attempt) -> str:
    return f"{attempt.member}/coupons/{attempt.request.coupon}"
