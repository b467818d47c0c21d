"""Refunding an order (`RefundPurchase`): take back the points it earned, and for a whole order
give back what paid for it at checkout (the checkout log says what that was).

Forward recovery rather than a saga: every step is idempotent by a request id derived from the
refund's own, and "already given back" counts as done, so a retry after any failure finishes
what is left and nothing is given back twice. The refund's answer is kept with its request_id
in the gateway's database (like a recorded purchase), in the transaction that also marks the
order's checkouts refunded; a second refund of the same order finds them refunded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty_kit.idempotency import run_idempotent
from loyalty_kit.resources import member_id_of, unit_of
from loyalty_kit.uow import UnitOfWork

from loyalty_gateway.adapters.checkout_log import CheckoutLog
from loyalty_gateway.adapters.services import Call, Metadata, Services, reason_of
from loyalty_gateway.flows.checks import check_refund
from loyalty_gateway.flows.parts import PARTS, give_back
from loyalty_gateway.flows.service import method, scope_of

# A refund of an order that earned nothing, or whose points were taken back already: what paid
# for it at checkout may still be given back.
NOTHING_TO_REVERSE = ("ORDER_NOT_FOUND", "ALREADY_REVERSED")


@dataclass(frozen=True)
class RefundPurchase:
    METHOD = method("RefundPurchase")

    services: Services
    uow: Callable[[], UnitOfWork]  # the gateway's database: the checkout log, answers kept
    deadline: float  # seconds, for each call

    async def __call__(
        self, request: pb.RefundPurchaseRequest, md: Metadata
    ) -> pb.RefundPurchaseResponse:
        check_refund(request)
        unit = unit_of(request.unit)
        scope = scope_of(self.METHOD)
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
        services, call = self.services, Call.each(md, self.deadline)
        order_id = request.order_id.strip()
        member = await services.resolve_member(call, request.identity)
        response = pb.RefundPurchaseResponse(member=member)
        not_earned: grpc.aio.AioRpcError | None = None
        try:
            reversed_ = await services.reverse_earn(
                call,
                points_pb.ReverseEarnRequest(
                    member=member,
                    request_id=f"{base}:earn",
                    unit=unit,
                    order_id=order_id,
                    line_ids=request.line_ids,
                    reason=request.reason,
                ),
            )
            response.reversal.CopyFrom(reversed_.posting)
            response.balance.CopyFrom(reversed_.balance)
        except grpc.aio.AioRpcError as error:
            if reason_of(error) not in NOTHING_TO_REVERSE:
                raise
            not_earned = error
        checkouts = CheckoutLog(uow.session)
        paid = await checkouts.completed_for_order(unit, order_id, member_id_of(member, "member"))
        if request.line_ids:
            paid = []  # a partial refund keeps what paid for the order
        if not_earned is not None and not paid:
            raise not_earned
        why = request.reason or "order refunded"
        for checkout_id, checkout in paid:
            for part in reversed(PARTS):  # points, benefit, coupon
                taken = part.paid(checkout)
                if taken is None:
                    continue
                given = await give_back(
                    services, part, taken, member, f"{base}:{part.name}", md, why=why
                )
                if given is not None:
                    part.given_into(response, given)
            await checkouts.mark_refunded(checkout_id)
        if not response.HasField("balance"):
            balance = await services.get_balance(call, member)
            response.balance.CopyFrom(balance.balance)
        return response
