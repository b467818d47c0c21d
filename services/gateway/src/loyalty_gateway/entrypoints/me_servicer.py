"""A member's own channel over gRPC (`loyalty.gateway.v1.MeService`): each method hands its
request to the `Me` flow, with the member's token, request id and trace context to pass on."""

from __future__ import annotations

import grpc
from loyalty.gateway.v1 import me_service_pb2 as pb
from loyalty.gateway.v1 import me_service_pb2_grpc

from loyalty_gateway.entrypoints.servicer import passed_on
from loyalty_gateway.flows.me import Me


class MeServicer(me_service_pb2_grpc.MeServiceServicer):
    def __init__(self, me: Me) -> None:
        self.me = me

    async def GetMyProfile(
        self, request: pb.GetMyProfileRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMyProfileResponse:
        return await self.me.get_profile(request, passed_on(context))

    async def UpdateMyProfile(
        self, request: pb.UpdateMyProfileRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateMyProfileResponse:
        return await self.me.update_profile(request, passed_on(context))

    async def GetMyAccount(
        self, request: pb.GetMyAccountRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMyAccountResponse:
        return await self.me.get_account(request, passed_on(context))

    async def ListMyPostings(
        self, request: pb.ListMyPostingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMyPostingsResponse:
        return await self.me.list_postings(request, passed_on(context))

    async def ListMyLots(
        self, request: pb.ListMyLotsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMyLotsResponse:
        return await self.me.list_lots(request, passed_on(context))

    async def ListMyCoupons(
        self, request: pb.ListMyCouponsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMyCouponsResponse:
        return await self.me.list_coupons(request, passed_on(context))

    async def ListMyEntitlements(
        self, request: pb.ListMyEntitlementsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMyEntitlementsResponse:
        return await self.me.list_entitlements(request, passed_on(context))

    async def ListMyTierHistory(
        self, request: pb.ListMyTierHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMyTierHistoryResponse:
        return await self.me.list_tier_history(request, passed_on(context))

    async def RedeemMyReward(
        self, request: pb.RedeemMyRewardRequest, context: grpc.aio.ServicerContext
    ) -> pb.RedeemMyRewardResponse:
        return await self.me.redeem_reward(request, passed_on(context))

    async def ListMyConsents(
        self, request: pb.ListMyConsentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMyConsentsResponse:
        return await self.me.list_consents(request, passed_on(context))

    async def SetMyConsents(
        self, request: pb.SetMyConsentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetMyConsentsResponse:
        return await self.me.set_consents(request, passed_on(context))

    async def ExportMyData(
        self, request: pb.ExportMyDataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExportMyDataResponse:
        return await self.me.export_data(request, passed_on(context))

    async def GetMyMemberCode(
        self, request: pb.GetMyMemberCodeRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMyMemberCodeResponse:
        return await self.me.get_member_code(request, passed_on(context))

    async def RotateMyMemberCode(
        self, request: pb.RotateMyMemberCodeRequest, context: grpc.aio.ServicerContext
    ) -> pb.RotateMyMemberCodeResponse:
        return await self.me.rotate_member_code(request, passed_on(context))

    async def SignMeOutEverywhere(
        self, request: pb.SignMeOutEverywhereRequest, context: grpc.aio.ServicerContext
    ) -> pb.SignMeOutEverywhereResponse:
        return await self.me.sign_out_everywhere(request, passed_on(context))

    async def ListMyCouponOffers(
        self, request: pb.ListMyCouponOffersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMyCouponOffersResponse:
        return await self.me.list_coupon_offers(request, passed_on(context))

    async def ClaimMyCoupon(
        self, request: pb.ClaimMyCouponRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClaimMyCouponResponse:
        return await self.me.claim_coupon(request, passed_on(context))

    async def GetMyReferralCode(
        self, request: pb.GetMyReferralCodeRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMyReferralCodeResponse:
        return await self.me.get_referral_code(request, passed_on(context))

    async def ListMyReferrals(
        self, request: pb.ListMyReferralsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMyReferralsResponse:
        return await self.me.list_referrals(request, passed_on(context))

    async def RequestMyErasure(
        self, request: pb.RequestMyErasureRequest, context: grpc.aio.ServicerContext
    ) -> pb.RequestMyErasureResponse:
        return await self.me.request_erasure(request, passed_on(context))

    async def ConfirmMyErasure(
        self, request: pb.ConfirmMyErasureRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConfirmMyErasureResponse:
        return await self.me.confirm_erasure(request, passed_on(context))

    async def CancelMyErasure(
        self, request: pb.CancelMyErasureRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelMyErasureResponse:
        return await self.me.cancel_erasure(request, passed_on(context))

    async def GetMyErasureRequest(
        self, request: pb.GetMyErasureRequestRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMyErasureRequestResponse:
        return await self.me.get_erasure_request(request, passed_on(context))
