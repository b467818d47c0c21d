"""The four services as the composite flows call them: one named helper per RPC, over the
shared channels.

Every call carries the caller's credential (its bearer token, or in development its caller
headers), the request id and the trace context (`Call.metadata`), so each service checks the
caller itself, and the time it may take (`Call.timeout`), which the flow decides.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.benefits.v1 import benefits_service_pb2_grpc
from loyalty.engagement.v1 import challenges_pb2 as challenges_pb
from loyalty.engagement.v1 import challenges_pb2_grpc, engagement_service_pb2_grpc
from loyalty.engagement.v1 import engagement_service_pb2 as engagement_pb
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty.insights.v1 import insights_service_pb2 as insights_pb
from loyalty.insights.v1 import insights_service_pb2_grpc, segments_pb2_grpc
from loyalty.insights.v1 import segments_pb2 as segments_pb
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_kit.status import error_info, from_rpc_error

from loyalty_gateway.adapters.backends import Backends

Metadata = tuple[tuple[str, str], ...]
# Metadata passed on to the services: who calls, which request, which trace.
FORWARDED = ("authorization", "x-loyalty-", "x-request-id", "traceparent", "tracestate")


def reason_of(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a service's refusal ("" if it carried none)."""
    status = from_rpc_error(error)
    info = error_info(status) if status is not None else None
    return info.reason if info else ""


def forwarded(metadata: Sequence[tuple[str, str | bytes]]) -> Metadata:
    """The caller's text headers worth passing on (a `-bin` header is none of ours: dropped)."""
    return tuple(
        (k.lower(), v)
        for k, v in metadata
        if isinstance(v, str) and k.lower().startswith(FORWARDED)
    )


@dataclass(frozen=True)
class Call:
    """How a flow calls the services: the metadata passed on, and each call's timeout."""

    metadata: Metadata
    timeout: Callable[[], float]

    @staticmethod
    def each(metadata: Metadata, seconds: float) -> Call:
        """Every call may take `seconds`."""
        return Call(metadata, lambda: seconds)

    @staticmethod
    def within(metadata: Metadata, seconds: float, at_least: float = 0.0) -> Call:
        """Every call ends by one deadline, `seconds` from now (each given `at_least`)."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + seconds
        return Call(metadata, lambda: max(at_least, ends - loop.time()))

    async def ask(self, rpc: Callable[..., Awaitable[Any]], request: Message) -> Any:
        """One unary call with this call's metadata and timeout."""
        return await rpc(request, metadata=self.metadata, timeout=self.timeout())


class Services:
    """The identity, points, tiers, benefits, insights and engagement services, one method per RPC
    the flows use."""

    def __init__(self, backends: Backends) -> None:
        ch = backends.channels
        self.identity = identity_service_pb2_grpc.IdentityServiceStub(ch["identity"])
        self.points = points_service_pb2_grpc.PointsServiceStub(ch["points"])
        self.tiers = tiers_service_pb2_grpc.TiersServiceStub(ch["tiers"])
        self.benefits = benefits_service_pb2_grpc.BenefitsServiceStub(ch["benefits"])
        self.insights = insights_service_pb2_grpc.InsightsServiceStub(ch["insights"])
        self.challenges = challenges_pb2_grpc.ChallengeServiceStub(ch["engagement"])
        self.engagement = engagement_service_pb2_grpc.EngagementServiceStub(ch["engagement"])
        self.segments = segments_pb2_grpc.SegmentServiceStub(ch["insights"])

    # -- identity ----------------------------------------------------------------------------

    async def resolve_member(self, call: Call, identity: member_pb2.Identity) -> str:
        """The name (`members/<id>`) of the member holding `identity`."""
        resolved = await call.ask(
            self.identity.ResolveMember, identity_pb.ResolveMemberRequest(identity=identity)
        )
        name: str = resolved.member.name
        return name

    async def get_member(self, call: Call, member: str) -> identity_pb.GetMemberResponse:
        answer: identity_pb.GetMemberResponse = await call.ask(
            self.identity.GetMember, identity_pb.GetMemberRequest(name=member)
        )
        return answer

    async def export_identity(
        self, call: Call, member: str
    ) -> identity_pb.ExportMemberDataResponse:
        answer: identity_pb.ExportMemberDataResponse = await call.ask(
            self.identity.ExportMemberData, identity_pb.ExportMemberDataRequest(name=member)
        )
        return answer

    # -- points ------------------------------------------------------------------------------

    async def get_balance(self, call: Call, member: str) -> points_pb.GetBalanceResponse:
        answer: points_pb.GetBalanceResponse = await call.ask(
            self.points.GetBalance, points_pb.GetBalanceRequest(member=member)
        )
        return answer

    async def earn_points(
        self, call: Call, request: points_pb.EarnPointsRequest
    ) -> points_pb.EarnPointsResponse:
        answer: points_pb.EarnPointsResponse = await call.ask(self.points.EarnPoints, request)
        return answer

    async def reverse_earn(
        self, call: Call, request: points_pb.ReverseEarnRequest
    ) -> points_pb.ReverseEarnResponse:
        answer: points_pb.ReverseEarnResponse = await call.ask(self.points.ReverseEarn, request)
        return answer

    async def redeem_points(
        self, call: Call, request: points_pb.RedeemPointsRequest
    ) -> points_pb.RedeemPointsResponse:
        answer: points_pb.RedeemPointsResponse = await call.ask(self.points.RedeemPoints, request)
        return answer

    async def lookup_redemption(
        self, call: Call, member: str, request_id: str
    ) -> points_pb.RedeemPointsResponse | None:
        """The redemption made by `request_id`, or None if there was none (takes nothing)."""
        found: points_pb.LookupRedemptionResponse = await call.ask(
            self.points.LookupRedemption,
            points_pb.LookupRedemptionRequest(member=member, request_id=request_id),
        )
        return found.redemption if found.redeemed else None

    async def cancel_redemption(
        self, call: Call, member: str, request_id: str, posting_id: str, reason: str
    ) -> points_pb.CancelRedemptionResponse:
        answer: points_pb.CancelRedemptionResponse = await call.ask(
            self.points.CancelRedemption,
            points_pb.CancelRedemptionRequest(
                member=member, request_id=request_id, posting_id=posting_id, reason=reason
            ),
        )
        return answer

    async def list_postings(
        self, call: Call, member: str, page_size: int, page_token: str
    ) -> points_pb.ListPostingsResponse:
        answer: points_pb.ListPostingsResponse = await call.ask(
            self.points.ListPostings,
            points_pb.ListPostingsRequest(
                member=member, page_size=page_size, page_token=page_token
            ),
        )
        return answer

    # -- insights ----------------------------------------------------------------------------

    async def get_recommendations(
        self, call: Call, member: str, unit: str, page_size: int
    ) -> insights_pb.GetRecommendationsResponse:
        answer: insights_pb.GetRecommendationsResponse = await call.ask(
            self.insights.GetRecommendations,
            insights_pb.GetRecommendationsRequest(member=member, unit=unit, page_size=page_size),
        )
        return answer

    # -- engagement: challenges and badges -----------------------------------------------------

    async def get_member_progress(
        self, call: Call, member: str
    ) -> challenges_pb.GetMemberProgressResponse:
        answer: challenges_pb.GetMemberProgressResponse = await call.ask(
            self.challenges.GetMemberProgress,
            challenges_pb.GetMemberProgressRequest(member=member),
        )
        return answer

    async def list_member_badges(
        self, call: Call, member: str
    ) -> challenges_pb.ListMemberBadgesResponse:
        answer: challenges_pb.ListMemberBadgesResponse = await call.ask(
            self.challenges.ListMemberBadges, challenges_pb.ListMemberBadgesRequest(member=member)
        )
        return answer

    # -- tiers -------------------------------------------------------------------------------

    async def get_member_tier(self, call: Call, member: str) -> tiers_pb.GetMemberTierResponse:
        answer: tiers_pb.GetMemberTierResponse = await call.ask(
            self.tiers.GetMemberTier, tiers_pb.GetMemberTierRequest(member=member)
        )
        return answer

    async def preview_member_tier(
        self, call: Call, member: str, activity: tiers_pb.ExtraActivity
    ) -> tiers_pb.PreviewMemberTierResponse:
        answer: tiers_pb.PreviewMemberTierResponse = await call.ask(
            self.tiers.PreviewMemberTier,
            tiers_pb.PreviewMemberTierRequest(member=member, activities=[activity]),
        )
        return answer

    async def list_tier_history(
        self, call: Call, member: str, page_size: int, page_token: str
    ) -> tiers_pb.ListTierHistoryResponse:
        answer: tiers_pb.ListTierHistoryResponse = await call.ask(
            self.tiers.ListTierHistory,
            tiers_pb.ListTierHistoryRequest(
                member=member, page_size=page_size, page_token=page_token
            ),
        )
        return answer

    async def list_tier_grants(
        self, call: Call, member: str, page_size: int, page_token: str
    ) -> tiers_pb.ListTierGrantsResponse:
        answer: tiers_pb.ListTierGrantsResponse = await call.ask(
            self.tiers.ListTierGrants,
            tiers_pb.ListTierGrantsRequest(
                member=member, page_size=page_size, page_token=page_token
            ),
        )
        return answer

    # -- benefits ----------------------------------------------------------------------------

    async def list_entitlements(
        self, call: Call, member: str, page_size: int, page_token: str = "", unit: str = ""
    ) -> benefits_pb.ListEntitlementsResponse:
        answer: benefits_pb.ListEntitlementsResponse = await call.ask(
            self.benefits.ListEntitlements,
            benefits_pb.ListEntitlementsRequest(
                member=member, unit=unit, page_size=page_size, page_token=page_token
            ),
        )
        return answer

    async def list_coupons(
        self,
        call: Call,
        member: str,
        page_size: int,
        page_token: str = "",
        state: benefits_pb.CouponState.ValueType = benefits_pb.COUPON_STATE_UNSPECIFIED,
    ) -> benefits_pb.ListCouponsResponse:
        answer: benefits_pb.ListCouponsResponse = await call.ask(
            self.benefits.ListCoupons,
            benefits_pb.ListCouponsRequest(
                member=member, state=state, page_size=page_size, page_token=page_token
            ),
        )
        return answer

    async def redeem_coupon(
        self, call: Call, request: benefits_pb.RedeemCouponRequest
    ) -> benefits_pb.RedeemCouponResponse:
        answer: benefits_pb.RedeemCouponResponse = await call.ask(
            self.benefits.RedeemCoupon, request
        )
        return answer

    async def lookup_coupon_redemption(
        self, call: Call, coupon: str, request_id: str
    ) -> benefits_pb.RedeemCouponResponse | None:
        """The coupon's redemption by `request_id`, or None if there was none (takes nothing)."""
        found: benefits_pb.LookupCouponRedemptionResponse = await call.ask(
            self.benefits.LookupCouponRedemption,
            benefits_pb.LookupCouponRedemptionRequest(name=coupon, request_id=request_id),
        )
        return found.redemption if found.redeemed else None

    async def release_coupon(
        self, call: Call, coupon: str, request_id: str, reason: str
    ) -> benefits_pb.ReleaseCouponResponse:
        answer: benefits_pb.ReleaseCouponResponse = await call.ask(
            self.benefits.ReleaseCoupon,
            benefits_pb.ReleaseCouponRequest(name=coupon, request_id=request_id, reason=reason),
        )
        return answer

    async def consume_benefit(
        self, call: Call, request: benefits_pb.ConsumeBenefitRequest
    ) -> benefits_pb.ConsumeBenefitResponse:
        answer: benefits_pb.ConsumeBenefitResponse = await call.ask(
            self.benefits.ConsumeBenefit, request
        )
        return answer

    async def lookup_consumption(
        self, call: Call, member: str, request_id: str
    ) -> benefits_pb.ConsumeBenefitResponse | None:
        """The consumption made by `request_id`, or None if there was none (takes nothing)."""
        found: benefits_pb.LookupConsumptionResponse = await call.ask(
            self.benefits.LookupConsumption,
            benefits_pb.LookupConsumptionRequest(member=member, request_id=request_id),
        )
        return found.consumption if found.consumed else None

    async def release_consumption(
        self, call: Call, consumption: str, request_id: str, reason: str
    ) -> benefits_pb.ReleaseConsumptionResponse:
        answer: benefits_pb.ReleaseConsumptionResponse = await call.ask(
            self.benefits.ReleaseConsumption,
            benefits_pb.ReleaseConsumptionRequest(
                name=consumption, request_id=request_id, reason=reason
            ),
        )
        return answer

    # -- member 360 and operator actions (the console's member pages) ------------------------

    async def resolve(self, call: Call, identity: member_pb2.Identity) -> member_pb2.Member:
        """The member holding `identity` (masked as the caller sees it)."""
        resolved: identity_pb.ResolveMemberResponse = await call.ask(
            self.identity.ResolveMember, identity_pb.ResolveMemberRequest(identity=identity)
        )
        return resolved.member

    async def list_consent_events(
        self, call: Call, member: str, page_size: int, page_token: str = ""
    ) -> identity_pb.ListConsentEventsResponse:
        answer: identity_pb.ListConsentEventsResponse = await call.ask(
            self.identity.ListConsentEvents,
            identity_pb.ListConsentEventsRequest(
                member=member, page_size=page_size, page_token=page_token
            ),
        )
        return answer

    async def suspend_member(
        self, call: Call, member: str, request_id: str, reason: str
    ) -> identity_pb.SuspendMemberResponse:
        answer: identity_pb.SuspendMemberResponse = await call.ask(
            self.identity.SuspendMember,
            identity_pb.SuspendMemberRequest(name=member, request_id=request_id, reason=reason),
        )
        return answer

    async def reactivate_member(
        self, call: Call, member: str, request_id: str, reason: str
    ) -> identity_pb.ReactivateMemberResponse:
        answer: identity_pb.ReactivateMemberResponse = await call.ask(
            self.identity.ReactivateMember,
            identity_pb.ReactivateMemberRequest(name=member, request_id=request_id, reason=reason),
        )
        return answer

    async def merge_members(
        self, call: Call, survivor: str, absorbed: str, request_id: str, reason: str
    ) -> identity_pb.MergeMembersResponse:
        answer: identity_pb.MergeMembersResponse = await call.ask(
            self.identity.MergeMembers,
            identity_pb.MergeMembersRequest(
                survivor=survivor, absorbed=absorbed, request_id=request_id, reason=reason
            ),
        )
        return answer

    async def unmerge_members(
        self,
        call: Call,
        survivor: str,
        restored: str,
        identities: Sequence[member_pb2.Identity],
        request_id: str,
        reason: str,
    ) -> identity_pb.UnmergeMembersResponse:
        answer: identity_pb.UnmergeMembersResponse = await call.ask(
            self.identity.UnmergeMembers,
            identity_pb.UnmergeMembersRequest(
                survivor=survivor,
                restored=restored,
                identities=identities,
                request_id=request_id,
                reason=reason,
            ),
        )
        return answer

    async def erase_member(
        self, call: Call, member: str, request_id: str, reason: str
    ) -> identity_pb.EraseMemberResponse:
        answer: identity_pb.EraseMemberResponse = await call.ask(
            self.identity.EraseMember,
            identity_pb.EraseMemberRequest(name=member, request_id=request_id, reason=reason),
        )
        return answer

    async def list_lots(
        self, call: Call, member: str, page_size: int, page_token: str = ""
    ) -> points_pb.ListLotsResponse:
        answer: points_pb.ListLotsResponse = await call.ask(
            self.points.ListLots,
            points_pb.ListLotsRequest(member=member, page_size=page_size, page_token=page_token),
        )
        return answer

    async def list_postings_at(
        self,
        call: Call,
        member: str,
        unit: str,
        page_size: int,
        page_token: str = "",
        kind: points_pb.PostingKind.ValueType = points_pb.POSTING_KIND_UNSPECIFIED,
    ) -> points_pb.ListPostingsResponse:
        """The member's postings at `unit` only ("" : at every unit), of one kind or all."""
        answer: points_pb.ListPostingsResponse = await call.ask(
            self.points.ListPostings,
            points_pb.ListPostingsRequest(
                member=member, unit=unit, kind=kind, page_size=page_size, page_token=page_token
            ),
        )
        return answer

    async def adjust_points(
        self, call: Call, member: str, unit: str, points: int, request_id: str, reason: str
    ) -> points_pb.AdjustPointsResponse:
        answer: points_pb.AdjustPointsResponse = await call.ask(
            self.points.AdjustPoints,
            points_pb.AdjustPointsRequest(
                member=member, unit=unit, points=points, request_id=request_id, reason=reason
            ),
        )
        return answer

    async def create_tier_grant(
        self, call: Call, member: str, grant: tiers_pb.TierGrant, request_id: str
    ) -> tiers_pb.CreateTierGrantResponse:
        answer: tiers_pb.CreateTierGrantResponse = await call.ask(
            self.tiers.CreateTierGrant,
            tiers_pb.CreateTierGrantRequest(member=member, tier_grant=grant, request_id=request_id),
        )
        return answer

    async def revoke_tier_grant(
        self, call: Call, grant: str, request_id: str, reason: str
    ) -> tiers_pb.RevokeTierGrantResponse:
        answer: tiers_pb.RevokeTierGrantResponse = await call.ask(
            self.tiers.RevokeTierGrant,
            tiers_pb.RevokeTierGrantRequest(name=grant, request_id=request_id, reason=reason),
        )
        return answer

    async def issue_coupons(
        self, call: Call, template: str, members: Sequence[str], request_id: str
    ) -> benefits_pb.IssueCouponsResponse:
        answer: benefits_pb.IssueCouponsResponse = await call.ask(
            self.benefits.IssueCoupons,
            benefits_pb.IssueCouponsRequest(
                template=template, members=members, request_id=request_id
            ),
        )
        return answer

    async def list_messages(
        self, call: Call, member_id: str, page_size: int, page_token: str = ""
    ) -> engagement_pb.ListMessagesResponse:
        answer: engagement_pb.ListMessagesResponse = await call.ask(
            self.engagement.ListMessages,
            engagement_pb.ListMessagesRequest(
                member_id=member_id, page_size=page_size, page_token=page_token
            ),
        )
        return answer

    async def list_member_segments(
        self, call: Call, member: str, page_size: int, page_token: str = ""
    ) -> segments_pb.ListMemberSegmentsResponse:
        answer: segments_pb.ListMemberSegmentsResponse = await call.ask(
            self.segments.ListMemberSegments,
            segments_pb.ListMemberSegmentsRequest(
                member=member, page_size=page_size, page_token=page_token
            ),
        )
        return answer

    # -- the dashboards' figures (flows/figures.py) -----------------------------------------------

    async def get_points_liability(
        self, call: Call, request: insights_pb.GetPointsLiabilityRequest
    ) -> insights_pb.GetPointsLiabilityResponse:
        answer: insights_pb.GetPointsLiabilityResponse = await call.ask(
            self.insights.GetPointsLiability, request
        )
        return answer

    async def get_settlement(
        self, call: Call, request: points_pb.GetSettlementRequest
    ) -> points_pb.GetSettlementResponse:
        answer: points_pb.GetSettlementResponse = await call.ask(self.points.GetSettlement, request)
        return answer

    async def get_programme_health(
        self, call: Call, request: insights_pb.GetProgrammeHealthRequest
    ) -> insights_pb.GetProgrammeHealthResponse:
        answer: insights_pb.GetProgrammeHealthResponse = await call.ask(
            self.insights.GetProgrammeHealth, request
        )
        return answer

    async def get_tier_distribution(self, call: Call) -> tiers_pb.GetTierDistributionResponse:
        answer: tiers_pb.GetTierDistributionResponse = await call.ask(
            self.tiers.GetTierDistribution, tiers_pb.GetTierDistributionRequest()
        )
        return answer

    async def get_rfm(
        self, call: Call, request: insights_pb.GetRfmRequest
    ) -> insights_pb.GetRfmResponse:
        answer: insights_pb.GetRfmResponse = await call.ask(self.insights.GetRfm, request)
        return answer

    async def get_unit_overlap(
        self, call: Call, request: insights_pb.GetUnitOverlapRequest
    ) -> insights_pb.GetUnitOverlapResponse:
        answer: insights_pb.GetUnitOverlapResponse = await call.ask(
            self.insights.GetUnitOverlap, request
        )
        return answer

    async def get_multi_unit_members(
        self, call: Call, request: insights_pb.GetMultiUnitMembersRequest
    ) -> insights_pb.GetMultiUnitMembersResponse:
        answer: insights_pb.GetMultiUnitMembersResponse = await call.ask(
            self.insights.GetMultiUnitMembers, request
        )
        return answer

    async def get_cohorts(
        self, call: Call, request: insights_pb.GetCohortsRequest
    ) -> insights_pb.GetCohortsResponse:
        answer: insights_pb.GetCohortsResponse = await call.ask(self.insights.GetCohorts, request)
        return answer

    async def list_journeys(
        self, call: Call, page_size: int, page_token: str = ""
    ) -> engagement_pb.ListJourneysResponse:
        answer: engagement_pb.ListJourneysResponse = await call.ask(
            self.engagement.ListJourneys,
            engagement_pb.ListJourneysRequest(page_size=page_size, page_token=page_token),
        )
        return answer

    async def get_journey_uplift(
        self, call: Call, journey: str, window_days: int = 0
    ) -> insights_pb.GetJourneyUpliftResponse:
        answer: insights_pb.GetJourneyUpliftResponse = await call.ask(
            self.insights.GetJourneyUplift,
            insights_pb.GetJourneyUpliftRequest(journey=journey, window_days=window_days),
        )
        return answer
