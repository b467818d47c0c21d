"""Refunding an order: take back the points it earned, and for a whole order give back what
paid for it at checkout (the checkouts log says what that was).

Forward recovery rather than a saga: every step is idempotent by a request id derived from the
refund's own, and "already given back" counts as done, so a retry after any failure finishes
what is left and nothing is given back twice. The refund's answer is kept with its request_id
in the gateway's database (like a recorded purchase), in the transaction that also marks the
order's checkouts refunded; a second refund of the same order finds them refunded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import grpc
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty_kit.db import driver_connection
from loyalty_kit.errors import InvalidArgument, Violations
from loyalty_kit.idempotency import request_scope, run_idempotent, validate_request_id
from loyalty_kit.resources import member_id_of, unit_of
from loyalty_kit.uow import UnitOfWork
from loyalty_kit.validation import length_violation

from loyalty_gateway.checkout import SERVICE, Metadata, give_back, reason_of
from loyalty_gateway.stubs import Stubs


def check(request: pb.RefundPurchaseRequest) -> None:
    problems = Violations()
    if not request.identity.type or not request.identity.value:
        problems.add("identity", "the member's identity: type and value")
    if too_long := length_violation(request.order_id, "order_id"):
        problems.items.append(too_long)
    try:
        validate_request_id(request.request_id)
    except InvalidArgument as error:
        problems.items.extend(error.field_violations)
    problems.raise_if_any()


class Refunds:
    def __init__(
        self, stubs: Stubs, uow_factory: Callable[[], UnitOfWork], deadline_seconds: float
    ) -> None:
        self.stubs = stubs
        self.uow = uow_factory
        self.deadline = deadline_seconds

    async def refund(
        self, request: pb.RefundPurchaseRequest, md: Metadata
    ) -> pb.RefundPurchaseResponse:
        check(request)
        unit = unit_of(request.unit)
        scope = request_scope(SERVICE, "RefundPurchase")
        # The steps' request ids: stable across retries of this refund, unique to it.
        base = "rf." + hashlib.sha256(f"{scope}\0{request.request_id}".encode()).hexdigest()[:40]

        async def work(uow: UnitOfWork) -> pb.RefundPurchaseResponse:
            return await self._refund(uow, request, unit, base, md)

        return await run_idempotent(self.uow, scope, request, pb.RefundPurchaseResponse, work)

    async def _refund(
        self,
        uow: UnitOfWork,
        request: pb.RefundPurchaseRequest,
        unit: str,
        base: str,
        md: Metadata,
    ) -> pb.RefundPurchaseResponse:
        stubs, order_id = self.stubs, request.order_id.strip()
        resolved = await stubs.identity.ResolveMember(
            identity_pb.ResolveMemberRequest(identity=request.identity),
            metadata=md,
            timeout=self.deadline,
        )
        member = resolved.member.name
        response = pb.RefundPurchaseResponse(member=member)
        not_earned: grpc.aio.AioRpcError | None = None
        try:
            reversed_ = await stubs.points.ReverseEarn(
                points_pb.ReverseEarnRequest(
                    member=member,
                    request_id=f"{base}:earn",
                    unit=unit,
                    order_id=order_id,
                    line_ids=request.line_ids,
                    reason=request.reason,
                ),
                metadata=md,
                timeout=self.deadline,
            )
            response.reversal.CopyFrom(reversed_.posting)
            response.balance.CopyFrom(reversed_.balance)
        except grpc.aio.AioRpcError as error:
            if reason_of(error) not in ("ORDER_NOT_FOUND", "ALREADY_REVERSED"):
                raise
            # An order paid at checkout that earned nothing, or whose points were taken back
            # already: what paid for it may still be given back.
            not_earned = error
        paid = await self._checkouts(uow, unit, order_id, member_id_of(member, "member"))
        if request.line_ids:
            paid = []  # a partial refund keeps what paid for the order
        if not_earned is not None and not paid:
            raise not_earned
        for checkout_id, checkout in paid:
            parts = (
                ("points", checkout.HasField("points_posting"), checkout),
                ("benefit", checkout.HasField("consumption"), checkout),
                ("coupon", checkout.HasField("coupon"), checkout),
            )
            for step, present, answer in parts:
                if not present:
                    continue
                given = await give_back(
                    stubs,
                    step,
                    _as_step_answer(step, answer),
                    member,
                    f"{base}:{step}",
                    md,
                    why=request.reason or "order refunded",
                )
                if isinstance(given, points_pb.CancelRedemptionResponse):
                    response.points_returned.CopyFrom(given.posting)
                    response.balance.CopyFrom(given.balance)
                elif isinstance(given, benefits_pb.ReleaseConsumptionResponse):
                    response.consumption.CopyFrom(given.consumption)
                elif isinstance(given, benefits_pb.ReleaseCouponResponse):
                    response.coupon.CopyFrom(given.coupon)
            conn = await driver_connection(uow.session)
            await conn.execute(
                "UPDATE checkouts SET state = 'refunded', updated_at = now() "
                "WHERE checkout_id = $1",
                checkout_id,
            )
        if not response.HasField("balance"):
            balance = await stubs.points.GetBalance(
                points_pb.GetBalanceRequest(member=member), metadata=md, timeout=self.deadline
            )
            response.balance.CopyFrom(balance.balance)
        return response

    @staticmethod
    async def _checkouts(
        uow: UnitOfWork, unit: str, order_id: str, member_id: str
    ) -> list[tuple[object, pb.RedeemAtCheckoutResponse]]:
        """The order's completed checkouts, locked until the refund commits."""
        conn = await driver_connection(uow.session)
        rows = await conn.fetch(
            "SELECT checkout_id, response FROM checkouts WHERE unit = $1 AND order_id = $2 "
            "AND member_id = $3 AND state = 'completed' ORDER BY created_at FOR UPDATE",
            unit,
            order_id,
            member_id,
        )
        found = []
        for row in rows:
            answer = pb.RedeemAtCheckoutResponse()
            answer.ParseFromString(row["response"])
            found.append((row["checkout_id"], answer))
        return found


def _as_step_answer(step: str, checkout: pb.RedeemAtCheckoutResponse) -> object:
    """A checkout's part in the shape its step answered with (what give_back takes)."""
    if step == "points":
        return points_pb.RedeemPointsResponse(posting=checkout.points_posting)
    if step == "benefit":
        return benefits_pb.ConsumeBenefitResponse(consumption=checkout.consumption)
    return benefits_pb.RedeemCouponResponse(coupon=checkout.coupon)
