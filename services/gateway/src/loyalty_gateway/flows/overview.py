"""A member's overview (`GetMemberOverview`): profile (masked unless the caller may read
personal data), balance, tier and progress, entitlements at the unit, coupons, offers
recommended by insights, running challenges with the member's progress and the member's badges
(engagement), asked in parallel under one deadline. A service down leaves its part out, named in
`unavailable`; only identity's part is required."""

from __future__ import annotations

from dataclasses import dataclass

from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty_kit.caller import current_caller
from loyalty_kit.resources import member_id_of

from loyalty_gateway.adapters.services import Call, Metadata, Services
from loyalty_gateway.flows.parallel import AT_LEAST_SECONDS, add_usable, in_parallel, usable_now
from loyalty_gateway.flows.service import method

OFFERS_SHOWN = 5


@dataclass(frozen=True)
class Overview:
    METHOD = method("GetMemberOverview")

    services: Services
    deadline: float  # seconds, for all the parts together

    async def __call__(
        self, request: pb.GetMemberOverviewRequest, md: Metadata
    ) -> pb.GetMemberOverviewResponse:
        member = request.member
        member_id_of(member, "member")
        own = current_caller().unit
        unit = request.unit.strip() or own
        offers_of = unit if unit == own else ""  # another unit's offers are its own business
        services, call = self.services, Call.within(md, self.deadline, AT_LEAST_SECONDS)
        found, unavailable = await in_parallel(
            {
                "member": lambda: services.get_member(call, member),
                "balance": lambda: services.get_balance(call, member),
                "tier": lambda: services.get_member_tier(call, member),
                "challenges": lambda: services.get_member_progress(call, member),
                "badges": lambda: services.list_member_badges(call, member),
                **usable_now(services, call, member, unit),
                "recommendations": lambda: services.get_recommendations(
                    call, member, offers_of, OFFERS_SHOWN
                ),
            },
            must=("member",),
        )
        response = pb.GetMemberOverviewResponse(unavailable=unavailable)
        response.member.CopyFrom(found["member"].member)
        if "balance" in found:
            response.balance.CopyFrom(found["balance"].balance)
        if "tier" in found:
            response.tier.CopyFrom(found["tier"])
        if "challenges" in found:
            response.challenges.extend(found["challenges"].progress)
        if "badges" in found:
            response.badges.extend(found["badges"].badges)
        add_usable(response, found)
        if "recommendations" in found:
            response.recommendations.extend(found["recommendations"].recommendations)
        return response
