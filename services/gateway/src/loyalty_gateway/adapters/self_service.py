"""The services' RPCs a member's own channel (`flows/me.py`) calls and the other flows do not:
one named helper per RPC, over the shared channels, with the member's own token passed on in
`Call.metadata` (so each service checks its rule for the member too)."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.field_mask_pb2 import FieldMask
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.benefits.v1 import benefits_service_pb2_grpc, coupon_offers_pb2_grpc
from loyalty.benefits.v1 import coupon_offers_pb2 as offers_pb
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import (
    identity_service_pb2_grpc,
    member_code_pb2_grpc,
    member_erasure_pb2_grpc,
    member_pb2,
    member_sign_in_pb2_grpc,
)
from loyalty.identity.v1 import member_code_pb2 as code_pb
from loyalty.identity.v1 import member_erasure_pb2 as erasure_pb
from loyalty.identity.v1 import member_sign_in_pb2 as sign_in_pb
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2_grpc

from loyalty_gateway.adapters.backends import Backends
from loyalty_gateway.adapters.services import Call


class SelfService:
    """Identity (profile, consents, member code, sessions, erasure), points (balance and lots
    as the member asks, referrals) and benefits (rewards, coupon offers)."""

    def __init__(self, backends: Backends) -> None:
        ch = backends.channels
        self.identity = identity_service_pb2_grpc.IdentityServiceStub(ch["identity"])
        self.codes = member_code_pb2_grpc.MemberCodeServiceStub(ch["identity"])
        self.sign_in = member_sign_in_pb2_grpc.MemberSignInServiceStub(ch["identity"])
        self.erasures = member_erasure_pb2_grpc.MemberErasureServiceStub(ch["identity"])
        self.points = points_service_pb2_grpc.PointsServiceStub(ch["points"])
        self.benefits = benefits_service_pb2_grpc.BenefitsServiceStub(ch["benefits"])
        self.offers = coupon_offers_pb2_grpc.CouponOfferServiceStub(ch["benefits"])

    # -- identity ----------------------------------------------------------------------------

    async def update_profile(
        self,
        call: Call,
        member: str,
        request_id: str,
        profile: member_pb2.Profile,
        update_mask: FieldMask,
    ) -> identity_pb.UpdateProfileResponse:
        answer: identity_pb.UpdateProfileResponse = await call.ask(
            self.identity.UpdateProfile,
            identity_pb.UpdateProfileRequest(
                member=member, request_id=request_id, profile=profile, update_mask=update_mask
            ),
        )
        return answer

    async def set_consents(
        self,
        call: Call,
        member: str,
        request_id: str,
        changes: Sequence[member_pb2.ConsentChange],
        source: str,
    ) -> identity_pb.SetConsentsResponse:
        answer: identity_pb.SetConsentsResponse = await call.ask(
            self.identity.SetConsents,
            identity_pb.SetConsentsRequest(
                member=member, request_id=request_id, changes=changes, source=source
            ),
        )
        return answer

    async def get_member_code(self, call: Call, member: str) -> code_pb.GetMemberCodeResponse:
        answer: code_pb.GetMemberCodeResponse = await call.ask(
            self.codes.GetMemberCode, code_pb.GetMemberCodeRequest(member=member)
        )
        return answer

    async def rotate_member_code(
        self, call: Call, member: str, request_id: str, reason: str
    ) -> code_pb.RotateMemberCodeResponse:
        answer: code_pb.RotateMemberCodeResponse = await call.ask(
            self.codes.RotateMemberCode,
            code_pb.RotateMemberCodeRequest(member=member, request_id=request_id, reason=reason),
        )
        return answer

    async def sign_out_everywhere(
        self, call: Call, member: str
    ) -> sign_in_pb.SignOutEverywhereResponse:
        answer: sign_in_pb.SignOutEverywhereResponse = await call.ask(
            self.sign_in.SignOutEverywhere, sign_in_pb.SignOutEverywhereRequest(member=member)
        )
        return answer

    async def request_erasure(
        self, call: Call, member: str, request_id: str
    ) -> erasure_pb.RequestErasureResponse:
        answer: erasure_pb.RequestErasureResponse = await call.ask(
            self.erasures.RequestErasure,
            erasure_pb.RequestErasureRequest(member=member, request_id=request_id),
        )
        return answer

    async def confirm_erasure(
        self, call: Call, member: str, request_id: str, code: str
    ) -> erasure_pb.ConfirmErasureResponse:
        answer: erasure_pb.ConfirmErasureResponse = await call.ask(
            self.erasures.ConfirmErasure,
            erasure_pb.ConfirmErasureRequest(member=member, request_id=request_id, code=code),
        )
        return answer

    async def cancel_erasure(
        self, call: Call, member: str, request_id: str
    ) -> erasure_pb.CancelErasureResponse:
        answer: erasure_pb.CancelErasureResponse = await call.ask(
            self.erasures.CancelErasure,
            erasure_pb.CancelErasureRequest(member=member, request_id=request_id),
        )
        return answer

    async def get_erasure_request(
        self, call: Call, member: str
    ) -> erasure_pb.GetErasureRequestResponse:
        answer: erasure_pb.GetErasureRequestResponse = await call.ask(
            self.erasures.GetErasureRequest, erasure_pb.GetErasureRequestRequest(member=member)
        )
        return answer

    # -- points ------------------------------------------------------------------------------

    async def get_balance(
        self, call: Call, member: str, expiring_within_days: int
    ) -> points_pb.GetBalanceResponse:
        """The balance with its "expiring soon" window as the member asks for it."""
        answer: points_pb.GetBalanceResponse = await call.ask(
            self.points.GetBalance,
            points_pb.GetBalanceRequest(member=member, expiring_within_days=expiring_within_days),
        )
        return answer

    async def list_lots(
        self, call: Call, request: points_pb.ListLotsRequest
    ) -> points_pb.ListLotsResponse:
        answer: points_pb.ListLotsResponse = await call.ask(self.points.ListLots, request)
        return answer

    async def list_postings(
        self, call: Call, request: points_pb.ListPostingsRequest
    ) -> points_pb.ListPostingsResponse:
        answer: points_pb.ListPostingsResponse = await call.ask(self.points.ListPostings, request)
        return answer

    async def get_referral_code(self, call: Call, member: str) -> points_pb.GetReferralCodeResponse:
        answer: points_pb.GetReferralCodeResponse = await call.ask(
            self.points.GetReferralCode, points_pb.GetReferralCodeRequest(member=member)
        )
        return answer

    async def list_referrals(
        self, call: Call, member: str, page_size: int, page_token: str
    ) -> points_pb.ListReferralsResponse:
        answer: points_pb.ListReferralsResponse = await call.ask(
            self.points.ListReferrals,
            points_pb.ListReferralsRequest(
                member=member, page_size=page_size, page_token=page_token
            ),
        )
        return answer

    # -- benefits ----------------------------------------------------------------------------

    async def redeem_reward(
        self, call: Call, member: str, request_id: str, reward: str
    ) -> benefits_pb.RedeemRewardResponse:
        answer: benefits_pb.RedeemRewardResponse = await call.ask(
            self.benefits.RedeemReward,
            benefits_pb.RedeemRewardRequest(member=member, request_id=request_id, reward=reward),
        )
        return answer

    async def list_open_offers(
        self, call: Call, member: str, page_size: int, page_token: str
    ) -> offers_pb.ListCouponOffersResponse:
        """The offers `member` may claim now (no state asked: those it would be refused are
        left out), with what it claimed of each."""
        answer: offers_pb.ListCouponOffersResponse = await call.ask(
            self.offers.ListCouponOffers,
            offers_pb.ListCouponOffersRequest(
                member=member,
                page_size=page_size,
                page_token=page_token,
            ),
        )
        return answer

    async def claim_coupon(
        self, call: Call, member: str, request_id: str, offer: str
    ) -> offers_pb.ClaimCouponResponse:
        answer: offers_pb.ClaimCouponResponse = await call.ask(
            self.offers.ClaimCoupon,
            offers_pb.ClaimCouponRequest(offer=offer, member=member, request_id=request_id),
        )
        return answer
