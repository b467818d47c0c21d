"""Recording a purchase (`RecordPurchase`): find the member by any identity, earn for the order
lines, and answer with the points, the balance, the tier with this purchase counted as the
tiers service will count it, and what the member can use now.

The answer is kept with the request_id in the gateway's database: a POS retrying after a
timeout gets it again. No transaction is held across the calls: points takes the order once
by the same request_id, so a retry that runs the flow again (or a duplicate at the same moment)
credits the order once. An answer that cannot be kept (the gateway's database down) is still
given (`run_remembered`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty_kit.idempotency import run_remembered
from loyalty_kit.resources import unit_of
from loyalty_kit.uow import UnitOfWork

from loyalty_gateway.adapters.services import Call, Metadata, Services
from loyalty_gateway.flows.checks import check_purchase
from loyalty_gateway.flows.parallel import AT_LEAST_SECONDS, add_usable, in_parallel, usable_now
from loyalty_gateway.flows.service import method, scope_of


@dataclass(frozen=True)
class RecordPurchase:
    METHOD = method("RecordPurchase")

    services: Services
    uow: Callable[[], UnitOfWork]  # the gateway's database: the answers kept
    deadline: float  # seconds, for the member and the earning; again for the rest

    async def __call__(
        self, request: pb.RecordPurchaseRequest, md: Metadata
    ) -> pb.RecordPurchaseResponse:
        check_purchase(request)
        unit = unit_of(request.unit)

        async def work() -> pb.RecordPurchaseResponse:
            return await self._record(request, unit, md)

        scope = scope_of(self.METHOD)
        return await run_remembered(self.uow, scope, request, pb.RecordPurchaseResponse, work)

    async def _record(
        self, request: pb.RecordPurchaseRequest, unit: str, md: Metadata
    ) -> pb.RecordPurchaseResponse:
        services, call = self.services, Call.within(md, self.deadline)
        member = await services.resolve_member(call, request.identity)
        earned = await services.earn_points(call, _earning(request, member, unit))
        posting = earned.posting
        # The tiers service judges the purchase as it will when the points event arrives: the
        # spend in the base currency (as points computed it), at the time it happened.
        spent = tiers_pb.ExtraActivity(
            unit=unit,
            qualifying_spend=posting.breakdown.qualifying_spend_base.amount or "0",
            points=max(posting.points, 0),
            visits=1,
            posting_id=posting.posting_id,
            occur_time=posting.occur_time,
        )
        after = Call.within(md, self.deadline, AT_LEAST_SECONDS)
        found, unavailable = await in_parallel(
            {
                "tier": lambda: services.preview_member_tier(after, member, spent),
                **usable_now(services, after, member, unit),
            }
        )
        response = pb.RecordPurchaseResponse(
            member=member, posting=posting, balance=earned.balance, unavailable=unavailable
        )
        if "tier" in found:
            response.tier, response.upgraded = found["tier"].tier, found["tier"].upgrade
        add_usable(response, found)
        return response


def _earning(
    request: pb.RecordPurchaseRequest, member: str, unit: str
) -> points_pb.EarnPointsRequest:
    earn = points_pb.EarnPointsRequest(
        member=member,
        request_id=request.request_id,
        unit=unit,
        channel=request.channel,
        order_id=request.order_id,
        lines=request.lines,
    )
    if request.HasField("occur_time"):
        earn.occur_time.CopyFrom(request.occur_time)
    return earn
