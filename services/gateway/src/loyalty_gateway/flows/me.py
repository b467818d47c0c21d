"""A member's own channel (`loyalty.gateway.v1.MeService`, `/v1/me...`): every method acts for
the member the caller's token speaks for, never a member the request names, and composes the
services' RPCs with the member's own token passed on, so each service checks its own rule for
the member too (defence in depth behind the gateway's `member_only` rules).

Each method reads top to bottom: its checks, one named helper per downstream call. Requests are
checked here first for what the gateway knows (request ids, page sizes, the account's window);
what a service judges (an update mask, a consent's purpose, a reward) it answers with the same
field names, the gateway's requests naming their fields as the services' do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import MethodDescriptor
from loyalty.gateway.v1 import gateway_service_pb2 as gateway_pb
from loyalty.gateway.v1 import me_service_pb2 as pb
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty_kit import audit
from loyalty_kit.access import MemberTokenRequired
from loyalty_kit.caller import current_caller
from loyalty_kit.errors import InvalidArgument, Violations
from loyalty_kit.idempotency import validate_request_id
from loyalty_kit.kernel.members import member_name

from loyalty_gateway.adapters.self_service import SelfService
from loyalty_gateway.adapters.services import Call, Metadata, Services
from loyalty_gateway.flows.export import ExportMemberData
from loyalty_gateway.flows.parallel import AT_LEAST_SECONDS, in_parallel

ME = pb.DESCRIPTOR.services_by_name["MeService"]
SELF_SERVICE = "member:self-service"  # the source of consents the member gives here
ROTATED_BY_MEMBER = "rotated by the member"
EXPIRING_LOTS_SHOWN = 50
MAX_WINDOW_DAYS = 3660  # the points service's longest "expiring soon" window
OFFERS = "couponOffers"


def own_member() -> str:
    """`members/{id}` of the member the caller's token speaks for (the access rule let only a
    member's token through; refused again here should a route ever skip it)."""
    member = current_caller().member
    if not member:
        raise MemberTokenRequired("call this with the member's own token (a sign-in's)")
    return member_name(member)


def check_page(problems: Violations, page_size: int) -> None:
    if page_size < 0:
        problems.add("page_size", "must not be negative")


def check_request_id(problems: Violations, request_id: str) -> None:
    try:
        validate_request_id(request_id)
    except InvalidArgument as error:
        problems.items.extend(error.field_violations)


def checked_page(page_size: int) -> None:
    problems = Violations()
    check_page(problems, page_size)
    problems.raise_if_any()


def checked_request_id(request_id: str) -> None:
    problems = Violations()
    check_request_id(problems, request_id)
    problems.raise_if_any()


def check_offer(problems: Violations, offer: str) -> None:
    prefix, _, offer_id = offer.partition("/")
    if prefix != OFFERS or not offer_id.strip():
        problems.add("offer", f"a resource name: {OFFERS}/{{offer_id}}")


def check_window(days: int) -> None:
    if not 0 <= days <= MAX_WINDOW_DAYS:
        problems = Violations()
        problems.add("expiring_within_days", f"0 (30 days) to {MAX_WINDOW_DAYS}")
        problems.raise_if_any()


@dataclass(frozen=True)
class Me:
    services: Services
    own: SelfService
    export: ExportMemberData
    deadline: float  # seconds, for all the calls of one request together

    def by_method(self) -> dict[MethodDescriptor, Callable[[Any, Metadata], Awaitable[Any]]]:
        """Every method of MeService and the method of this flow that answers it."""
        answers: dict[str, Callable[[Any, Metadata], Awaitable[Any]]] = {
            "GetMyProfile": self.get_profile,
            "UpdateMyProfile": self.update_profile,
            "GetMyAccount": self.get_account,
            "ListMyPostings": self.list_postings,
            "ListMyLots": self.list_lots,
            "ListMyCoupons": self.list_coupons,
            "ListMyEntitlements": self.list_entitlements,
            "ListMyTierHistory": self.list_tier_history,
            "RedeemMyReward": self.redeem_reward,
            "ListMyConsents": self.list_consents,
            "SetMyConsents": self.set_consents,
            "ExportMyData": self.export_data,
            "GetMyMemberCode": self.get_member_code,
            "RotateMyMemberCode": self.rotate_member_code,
            "SignMeOutEverywhere": self.sign_out_everywhere,
            "ListMyCouponOffers": self.list_coupon_offers,
            "ClaimMyCoupon": self.claim_coupon,
            "GetMyReferralCode": self.get_referral_code,
            "ListMyReferrals": self.list_referrals,
            "RequestMyErasure": self.request_erasure,
            "ConfirmMyErasure": self.confirm_erasure,
            "CancelMyErasure": self.cancel_erasure,
            "GetMyErasureRequest": self.get_erasure_request,
        }
        return {ME.methods_by_name[name]: answer for name, answer in answers.items()}

    def _call(self, md: Metadata) -> Call:
        return Call.within(md, self.deadline, AT_LEAST_SECONDS)

    # -- the member's profile ----------------------------------------------------------------

    async def get_profile(
        self, _request: pb.GetMyProfileRequest, md: Metadata
    ) -> pb.GetMyProfileResponse:
        found = await self.services.get_member(self._call(md), own_member())
        return pb.GetMyProfileResponse(member=found.member)

    async def update_profile(
        self, request: pb.UpdateMyProfileRequest, md: Metadata
    ) -> pb.UpdateMyProfileResponse:
        checked_request_id(request.request_id)
        updated = await self.own.update_profile(
            self._call(md), own_member(), request.request_id, request.profile, request.update_mask
        )
        return pb.UpdateMyProfileResponse(member=updated.member)

    # -- the member's account ----------------------------------------------------------------

    async def get_account(
        self, request: pb.GetMyAccountRequest, md: Metadata
    ) -> pb.GetMyAccountResponse:
        check_window(request.expiring_within_days)
        member, call = own_member(), self._call(md)

        async def points() -> tuple[points_pb.Balance, list[points_pb.Lot]]:
            # The lots expiring within the window the balance counts them in.
            found = await self.own.get_balance(call, member, request.expiring_within_days)
            lots = await self.own.list_lots(
                call,
                points_pb.ListLotsRequest(
                    member=member,
                    page_size=EXPIRING_LOTS_SHOWN,
                    expire_before=found.balance.expiring_soon_until,
                ),
            )
            return found.balance, list(lots.lots)

        found, unavailable = await in_parallel(
            {"points": points, "tier": lambda: self.services.get_member_tier(call, member)},
            must=("points",),
        )
        balance, lots = found["points"]
        response = pb.GetMyAccountResponse(
            balance=balance, expiring_lots=lots, unavailable=unavailable
        )
        if "tier" in found:
            response.tier.CopyFrom(found["tier"])
        return response

    async def list_postings(
        self, request: pb.ListMyPostingsRequest, md: Metadata
    ) -> pb.ListMyPostingsResponse:
        checked_page(request.page_size)
        found = await self.own.list_postings(
            self._call(md),
            points_pb.ListPostingsRequest(
                member=own_member(),
                page_size=request.page_size,
                page_token=request.page_token,
                unit=request.unit,
                kind=request.kind,
            ),
        )
        return pb.ListMyPostingsResponse(
            postings=found.postings, next_page_token=found.next_page_token
        )

    async def list_lots(self, request: pb.ListMyLotsRequest, md: Metadata) -> pb.ListMyLotsResponse:
        checked_page(request.page_size)
        found = await self.own.list_lots(
            self._call(md),
            points_pb.ListLotsRequest(
                member=own_member(),
                page_size=request.page_size,
                page_token=request.page_token,
                show_empty=request.show_empty,
            ),
        )
        return pb.ListMyLotsResponse(lots=found.lots, next_page_token=found.next_page_token)

    async def list_tier_history(
        self, request: pb.ListMyTierHistoryRequest, md: Metadata
    ) -> pb.ListMyTierHistoryResponse:
        checked_page(request.page_size)
        found = await self.services.list_tier_history(
            self._call(md), own_member(), request.page_size, request.page_token
        )
        return pb.ListMyTierHistoryResponse(
            changes=found.changes, next_page_token=found.next_page_token
        )

    # -- benefits ----------------------------------------------------------------------------

    async def list_coupons(
        self, request: pb.ListMyCouponsRequest, md: Metadata
    ) -> pb.ListMyCouponsResponse:
        checked_page(request.page_size)
        found = await self.services.list_coupons(
            self._call(md),
            own_member(),
            request.page_size,
            request.page_token,
            state=request.state,
        )
        return pb.ListMyCouponsResponse(
            coupons=found.coupons, next_page_token=found.next_page_token
        )

    async def list_entitlements(
        self, request: pb.ListMyEntitlementsRequest, md: Metadata
    ) -> pb.ListMyEntitlementsResponse:
        checked_page(request.page_size)
        found = await self.services.list_entitlements(
            self._call(md), own_member(), request.page_size, request.page_token, request.unit
        )
        return pb.ListMyEntitlementsResponse(
            tier=found.tier, entitlements=found.entitlements, next_page_token=found.next_page_token
        )

    async def redeem_reward(
        self, request: pb.RedeemMyRewardRequest, md: Metadata
    ) -> pb.RedeemMyRewardResponse:
        problems = Violations()
        check_request_id(problems, request.request_id)
        if not request.reward.strip():
            problems.add("reward", "the reward's code")
        problems.raise_if_any()
        redeemed = await self.own.redeem_reward(
            self._call(md), own_member(), request.request_id, request.reward.strip()
        )
        return pb.RedeemMyRewardResponse(redemption=redeemed)

    async def list_coupon_offers(
        self, request: pb.ListMyCouponOffersRequest, md: Metadata
    ) -> pb.ListMyCouponOffersResponse:
        checked_page(request.page_size)
        found = await self.own.list_open_offers(
            self._call(md), own_member(), request.page_size, request.page_token
        )
        return pb.ListMyCouponOffersResponse(
            coupon_offers=found.coupon_offers, next_page_token=found.next_page_token
        )

    async def claim_coupon(
        self, request: pb.ClaimMyCouponRequest, md: Metadata
    ) -> pb.ClaimMyCouponResponse:
        problems = Violations()
        check_request_id(problems, request.request_id)
        check_offer(problems, request.offer)
        problems.raise_if_any()
        claimed = await self.own.claim_coupon(
            self._call(md), own_member(), request.request_id, request.offer
        )
        return pb.ClaimMyCouponResponse(coupon=claimed.coupon, coupon_offer=claimed.coupon_offer)

    # -- referrals ---------------------------------------------------------------------------

    async def get_referral_code(
        self, _request: pb.GetMyReferralCodeRequest, md: Metadata
    ) -> pb.GetMyReferralCodeResponse:
        found = await self.own.get_referral_code(self._call(md), own_member())
        return pb.GetMyReferralCodeResponse(referral_code=found.referral_code)

    async def list_referrals(
        self, request: pb.ListMyReferralsRequest, md: Metadata
    ) -> pb.ListMyReferralsResponse:
        checked_page(request.page_size)
        found = await self.own.list_referrals(
            self._call(md), own_member(), request.page_size, request.page_token
        )
        return pb.ListMyReferralsResponse(
            referrals=found.referrals, next_page_token=found.next_page_token
        )

    # -- consents ----------------------------------------------------------------------------

    async def list_consents(
        self, request: pb.ListMyConsentsRequest, md: Metadata
    ) -> pb.ListMyConsentsResponse:
        checked_page(request.page_size)
        member, call = own_member(), self._call(md)
        found, _ = await in_parallel(
            {
                "member": lambda: self.services.get_member(call, member),
                "history": lambda: self.services.list_consent_events(
                    call, member, request.page_size, request.page_token
                ),
            },
            must=("member", "history"),
        )
        history = found["history"]
        return pb.ListMyConsentsResponse(
            consents=found["member"].member.consents,
            consent_events=history.consent_events,
            next_page_token=history.next_page_token,
        )

    async def set_consents(
        self, request: pb.SetMyConsentsRequest, md: Metadata
    ) -> pb.SetMyConsentsResponse:
        checked_request_id(request.request_id)
        changed = await self.own.set_consents(
            self._call(md), own_member(), request.request_id, request.changes, SELF_SERVICE
        )
        return pb.SetMyConsentsResponse(consents=changed.member.consents)

    # -- the member's data, code and sessions ------------------------------------------------

    async def export_data(
        self, _request: pb.ExportMyDataRequest, md: Metadata
    ) -> pb.ExportMyDataResponse:
        member = own_member()
        # The request names no member: the audit entry names the token's (by its id, as every
        # entry names a member).
        audit.note(target=current_caller().member)
        export = await self.export(gateway_pb.ExportMemberDataRequest(member=member), md)
        return pb.ExportMyDataResponse(export=export)

    async def get_member_code(
        self, _request: pb.GetMyMemberCodeRequest, md: Metadata
    ) -> pb.GetMyMemberCodeResponse:
        found = await self.own.get_member_code(self._call(md), own_member())
        return pb.GetMyMemberCodeResponse(member_code=found.member_code)

    async def rotate_member_code(
        self, request: pb.RotateMyMemberCodeRequest, md: Metadata
    ) -> pb.RotateMyMemberCodeResponse:
        checked_request_id(request.request_id)
        reason = request.reason.strip() or ROTATED_BY_MEMBER
        rotated = await self.own.rotate_member_code(
            self._call(md), own_member(), request.request_id, reason
        )
        return pb.RotateMyMemberCodeResponse(member_code=rotated.member_code)

    async def sign_out_everywhere(
        self, _request: pb.SignMeOutEverywhereRequest, md: Metadata
    ) -> pb.SignMeOutEverywhereResponse:
        ended = await self.own.sign_out_everywhere(self._call(md), own_member())
        return pb.SignMeOutEverywhereResponse(sessions_ended=ended.sessions_ended)

    # -- erasing oneself ---------------------------------------------------------------------

    async def request_erasure(
        self, request: pb.RequestMyErasureRequest, md: Metadata
    ) -> pb.RequestMyErasureResponse:
        checked_request_id(request.request_id)
        opened = await self.own.request_erasure(self._call(md), own_member(), request.request_id)
        return pb.RequestMyErasureResponse(erasure_request=opened.erasure_request)

    async def confirm_erasure(
        self, request: pb.ConfirmMyErasureRequest, md: Metadata
    ) -> pb.ConfirmMyErasureResponse:
        problems = Violations()
        check_request_id(problems, request.request_id)
        if not request.code.strip():
            problems.add("code", "the 6 digits sent to the member's phone")
        problems.raise_if_any()
        confirmed = await self.own.confirm_erasure(
            self._call(md), own_member(), request.request_id, request.code.strip()
        )
        return pb.ConfirmMyErasureResponse(erasure_request=confirmed.erasure_request)

    async def cancel_erasure(
        self, request: pb.CancelMyErasureRequest, md: Metadata
    ) -> pb.CancelMyErasureResponse:
        checked_request_id(request.request_id)
        cancelled = await self.own.cancel_erasure(self._call(md), own_member(), request.request_id)
        return pb.CancelMyErasureResponse(erasure_request=cancelled.erasure_request)

    async def get_erasure_request(
        self, _request: pb.GetMyErasureRequestRequest, md: Metadata
    ) -> pb.GetMyErasureRequestResponse:
        found = await self.own.get_erasure_request(self._call(md), own_member())
        return pb.GetMyErasureRequestResponse(erasure_request=found.erasure_request)
