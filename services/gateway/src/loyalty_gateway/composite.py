"""The composite flows: what a POS or an app needs in one call, composed from the services.

The same functions serve the gateway's gRPC methods and their HTTP routes. Calls to the
services carry the caller's credential (its bearer token, or in development its caller
headers), the request id and the trace context, so each service checks the caller itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty_kit.auth import ServiceCredentials
from loyalty_kit.caller import current_caller
from loyalty_kit.errors import FieldViolation, InvalidArgument, Violations
from loyalty_kit.idempotency import request_scope, run_remembered, validate_request_id
from loyalty_kit.resources import member_id_of, unit_of
from loyalty_kit.server import ServiceContext
from loyalty_kit.uow import UnitOfWork
from loyalty_kit.validation import length_violation

from loyalty_gateway.backends import Backends, shared_backends
from loyalty_gateway.checkout import SERVICE as SERVICE
from loyalty_gateway.checkout import Checkouts
from loyalty_gateway.export import Exports
from loyalty_gateway.keys import Keys
from loyalty_gateway.refund import Refunds
from loyalty_gateway.settings import GatewaySettings
from loyalty_gateway.stubs import Stubs

T = TypeVar("T")
# Metadata passed on to the services: who calls, which request, which trace.
FORWARDED = ("authorization", "x-loyalty-", "x-request-id", "traceparent", "tracestate")
COUPONS_SHOWN = 50


def forwarded(metadata: Sequence[tuple[str, str | bytes]]) -> tuple[tuple[str, str], ...]:
    """The caller's text headers worth passing on (a `-bin` header is none of ours: dropped)."""
    return tuple(
        (k.lower(), v)
        for k, v in metadata
        if isinstance(v, str) and k.lower().startswith(FORWARDED)
    )


class Composer:
    def __init__(
        self,
        backends: Backends,
        deadline_seconds: float,
        uow_factory: Callable[[], UnitOfWork],
        credentials: ServiceCredentials,
    ) -> None:
        self.backends = backends
        self.deadline = deadline_seconds
        self.uow = uow_factory
        stubs = Stubs(backends)
        self.identity, self.points = stubs.identity, stubs.points
        self.tiers, self.benefits = stubs.tiers, stubs.benefits
        self.checkouts = Checkouts(stubs, uow_factory, deadline_seconds, credentials)
        self.refunds = Refunds(stubs, uow_factory, deadline_seconds)
        self.exports = Exports(stubs, deadline_seconds)

    async def call(self, method: str, request: Any, md: tuple[tuple[str, str], ...]) -> Any:
        """One of the gateway's methods, for its gRPC servicer and its HTTP routes alike."""
        if method == "GetMemberOverview":
            return await self.overview(request, md)
        if method == "RecordPurchase":
            return await self.record_purchase(request, md)
        if method == "RedeemAtCheckout":
            return await self.checkouts.redeem(request, md)
        if method == "RefundPurchase":
            return await self.refunds.refund(request, md)
        if method == "ExportMemberData":
            return await self.exports.export(request, md)
        raise NotImplementedError(method)

    async def _parts(
        self, calls: dict[str, Callable[[float], Awaitable[Any]]], must: Sequence[str] = ()
    ) -> tuple[dict[str, Any], list[str]]:
        """Every call in parallel under one deadline. A part whose service fails is left out
        and named; a failure of a part in `must` is the whole answer's failure."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.deadline

        async def one(call: Callable[[float], Awaitable[Any]]) -> Any:
            return await call(max(0.05, ends - loop.time()))

        names = list(calls)
        results = await asyncio.gather(*(one(calls[n]) for n in names), return_exceptions=True)
        found: dict[str, Any] = {}
        unavailable: list[str] = []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, grpc.aio.AioRpcError):
                if name in must:
                    raise result
                unavailable.append(name)
            elif isinstance(result, BaseException):
                raise result
            else:
                found[name] = result
        return found, unavailable

    def _usable_now(
        self, member: str, unit: str, md: tuple[tuple[str, str], ...]
    ) -> dict[str, Callable[[float], Awaitable[Any]]]:
        return {
            "entitlements": lambda t: self.benefits.ListEntitlements(
                benefits_pb.ListEntitlementsRequest(member=member, unit=unit, page_size=200),
                metadata=md,
                timeout=t,
            ),
            "coupons": lambda t: self.benefits.ListCoupons(
                benefits_pb.ListCouponsRequest(
                    member=member, state=benefits_pb.COUPON_STATE_ISSUED, page_size=COUPONS_SHOWN
                ),
                metadata=md,
                timeout=t,
            ),
        }

    async def overview(
        self, request: pb.GetMemberOverviewRequest, md: tuple[tuple[str, str], ...]
    ) -> pb.GetMemberOverviewResponse:
        member = request.member
        member_id_of(member, "member")
        unit = request.unit.strip() or current_caller().unit
        calls: dict[str, Callable[[float], Awaitable[Any]]] = {
            "member": lambda t: self.identity.GetMember(
                identity_pb.GetMemberRequest(name=member), metadata=md, timeout=t
            ),
            "balance": lambda t: self.points.GetBalance(
                points_pb.GetBalanceRequest(member=member), metadata=md, timeout=t
            ),
            "tier": lambda t: self.tiers.GetMemberTier(
                tiers_pb.GetMemberTierRequest(member=member), metadata=md, timeout=t
            ),
            **self._usable_now(member, unit, md),
        }
        found, unavailable = await self._parts(calls, must=("member",))
        response = pb.GetMemberOverviewResponse(unavailable=unavailable)
        response.member.CopyFrom(found["member"].member)
        if "balance" in found:
            response.balance.CopyFrom(found["balance"].balance)
        if "tier" in found:
            response.tier.CopyFrom(found["tier"])
        if "entitlements" in found:
            response.entitlements.extend(found["entitlements"].entitlements)
        if "coupons" in found:
            response.coupons.extend(found["coupons"].coupons)
        return response

    async def record_purchase(
        self,
        request: pb.RecordPurchaseRequest,
        md: tuple[tuple[str, str], ...],
    ) -> pb.RecordPurchaseResponse:
        _check_purchase(request)
        unit = unit_of(request.unit)

        async def work() -> pb.RecordPurchaseResponse:
            return await self._purchase(request, unit, md)

        # The composite answer is kept with the request_id in the gateway's database: a POS
        # retrying after a timeout gets it again. No transaction is held across the calls:
        # points takes the order once by the same request_id, so a retry that runs the flow
        # again (or a duplicate at the same moment) credits the order once.
        scope = request_scope(SERVICE, "RecordPurchase")
        return await run_remembered(self.uow, scope, request, pb.RecordPurchaseResponse, work)

    async def _purchase(
        self, request: pb.RecordPurchaseRequest, unit: str, md: tuple[tuple[str, str], ...]
    ) -> pb.RecordPurchaseResponse:
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.deadline
        resolved = await self.identity.ResolveMember(
            identity_pb.ResolveMemberRequest(identity=request.identity),
            metadata=md,
            timeout=ends - loop.time(),
        )
        member = resolved.member.name
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
        earned = await self.points.EarnPoints(earn, metadata=md, timeout=ends - loop.time())
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
        found, unavailable = await self._parts(
            {
                "tier": lambda t: self.tiers.PreviewMemberTier(
                    tiers_pb.PreviewMemberTierRequest(member=member, activities=[spent]),
                    metadata=md,
                    timeout=t,
                ),
                **self._usable_now(member, unit, md),
            }
        )
        response = pb.RecordPurchaseResponse(
            member=member, posting=posting, balance=earned.balance, unavailable=unavailable
        )
        if "tier" in found:
            response.tier, response.upgraded = found["tier"].tier, found["tier"].upgrade
        if "entitlements" in found:
            response.entitlements.extend(found["entitlements"].entitlements)
        if "coupons" in found:
            response.coupons.extend(found["coupons"].coupons)
        return response


def _check_purchase(request: pb.RecordPurchaseRequest) -> None:
    problems = Violations()
    if not request.identity.type or not request.identity.value:
        problems.add("identity", "the member's identity: type and value")
    if too_long := length_violation(request.order_id, "order_id"):
        problems.items.append(too_long)
    if not request.lines:
        problems.add("lines", "at least one order line")
    try:
        validate_request_id(request.request_id)
    except InvalidArgument as error:
        problems.items.extend(error.field_violations)
    try:
        unit_of(request.unit)
    except InvalidArgument:
        problems.items.append(FieldViolation("unit", "a business unit code such as 'hotel'"))
    problems.raise_if_any()


def composer_of(context: ServiceContext) -> Composer:
    """The composite flows of this gateway process (one for its gRPC and HTTP sides)."""
    found = context.extras.get("composer")
    if found is None:
        credentials = ServiceCredentials("gateway", Keys(context).signing)
        found = context.extras["composer"] = Composer(
            shared_backends(context),
            GatewaySettings().request_deadline_seconds,
            context.uow,
            credentials,
        )
    return found  # type: ignore[no-any-return]
