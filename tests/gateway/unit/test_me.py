"""A member's own channel without services: the member comes from the token and from nowhere
else, the account asks points and tiers at once and names what is missing, what the gateway
checks before asking anyone, and what it passes on for the member."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.benefits.v1 import coupon_offers_pb2 as offers_pb
from loyalty.gateway.v1 import me_service_pb2 as pb
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import member_code_pb2 as code_pb
from loyalty.identity.v1 import member_erasure_pb2 as erasure_pb
from loyalty.identity.v1 import member_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty_gateway.flows.me import ME, ROTATED_BY_MEMBER, SELF_SERVICE, Me
from loyalty_kit.access import MemberTokenRequired
from loyalty_kit.caller import Caller, set_current_caller
from loyalty_kit.errors import InvalidArgument

M = TypeVar("M")
MEMBER_ID = str(uuid.uuid4())
MEMBER = f"members/{MEMBER_ID}"
OWN = Caller(client_id=f"member:{MEMBER_ID}", scopes=frozenset({"self:read"}), member=MEMBER_ID)
TILL = Caller(unit="mall", client_id="till", scopes=frozenset({"earn", "admin"}))
UNTIL = Timestamp(seconds=1_900_000_000)
OFFER = f"couponOffers/{uuid.uuid4()}"


def down() -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "down"
    )


class Fakes:
    """The services as the member's channel asks them, each call noted with its member."""

    def __init__(self, failing: tuple[str, ...] = ()) -> None:
        self.failing = failing
        self.asked: list[tuple[str, Any]] = []

    def _answer(self, name: str, asked: Any, answer: M) -> M:
        self.asked.append((name, asked))
        if name in self.failing:
            raise down()
        return answer

    async def get_member(self, call: Any, member: str) -> identity_pb.GetMemberResponse:
        return self._answer(
            "get_member",
            member,
            identity_pb.GetMemberResponse(member=member_pb2.Member(name=member)),
        )

    async def get_balance(self, call: Any, member: str, days: int) -> points_pb.GetBalanceResponse:
        balance = points_pb.Balance(available=70, expiring_soon=30, expiring_soon_until=UNTIL)
        return self._answer(
            "get_balance", (member, days), points_pb.GetBalanceResponse(balance=balance)
        )

    async def list_lots(self, call: Any, request: points_pb.ListLotsRequest) -> Any:
        lots = [points_pb.Lot(remaining_points=30, expire_time=UNTIL)]
        return self._answer("list_lots", request, points_pb.ListLotsResponse(lots=lots))

    async def list_postings(self, call: Any, request: points_pb.ListPostingsRequest) -> Any:
        return self._answer("list_postings", request, points_pb.ListPostingsResponse())

    async def get_member_tier(self, call: Any, member: str) -> tiers_pb.GetMemberTierResponse:
        return self._answer("tier", member, tiers_pb.GetMemberTierResponse(tier="gold"))

    async def set_consents(self, call: Any, *args: Any) -> identity_pb.SetConsentsResponse:
        return self._answer("set_consents", args, identity_pb.SetConsentsResponse())

    async def rotate_member_code(self, call: Any, *args: Any) -> Any:
        return self._answer("rotate", args, code_pb.RotateMemberCodeResponse())

    async def list_open_offers(self, call: Any, *args: Any) -> Any:
        return self._answer("offers", args, offers_pb.ListCouponOffersResponse())

    async def claim_coupon(self, call: Any, *args: Any) -> Any:
        return self._answer("claim", args, offers_pb.ClaimCouponResponse())

    async def get_referral_code(self, call: Any, *args: Any) -> Any:
        return self._answer("referral_code", args, points_pb.GetReferralCodeResponse())

    async def list_referrals(self, call: Any, *args: Any) -> Any:
        return self._answer("referrals", args, points_pb.ListReferralsResponse())

    async def request_erasure(self, call: Any, *args: Any) -> Any:
        return self._answer("request_erasure", args, erasure_pb.RequestErasureResponse())

    async def confirm_erasure(self, call: Any, *args: Any) -> Any:
        return self._answer("confirm_erasure", args, erasure_pb.ConfirmErasureResponse())

    async def cancel_erasure(self, call: Any, *args: Any) -> Any:
        return self._answer("cancel_erasure", args, erasure_pb.CancelErasureResponse())

    async def get_erasure_request(self, call: Any, *args: Any) -> Any:
        return self._answer("erasure", args, erasure_pb.GetErasureRequestResponse())


def me(fakes: Fakes) -> Me:
    return Me(fakes, fakes, None, 5.0)  # type: ignore[arg-type]


def run(caller: Caller, ask: Callable[[], Awaitable[Any]]) -> Any:
    async def as_caller() -> Any:
        set_current_caller(caller)
        return await ask()

    return asyncio.run(as_caller())


def test_every_method_of_the_service_has_its_answer() -> None:
    assert {m.name for m in me(Fakes()).by_method()} == {m.name for m in ME.methods}


def test_the_member_is_the_tokens_and_a_call_without_one_asks_nobody() -> None:
    fakes = Fakes()
    run(OWN, lambda: me(fakes).get_profile(pb.GetMyProfileRequest(), ()))
    assert fakes.asked == [("get_member", MEMBER)]
    with pytest.raises(MemberTokenRequired):
        run(TILL, lambda: me(fakes).get_profile(pb.GetMyProfileRequest(), ()))
    assert len(fakes.asked) == 1


def test_the_account_lists_the_lots_expiring_within_the_window_the_balance_counts() -> None:
    fakes = Fakes()
    request = pb.GetMyAccountRequest(expiring_within_days=90)
    account = run(OWN, lambda: me(fakes).get_account(request, ()))
    assert account.balance.available == 70 and account.tier.tier == "gold"
    assert [lot.remaining_points for lot in account.expiring_lots] == [30]
    assert account.unavailable == []
    asked = dict(fakes.asked)
    assert asked["get_balance"] == (MEMBER, 90)
    assert asked["list_lots"].member == MEMBER
    assert asked["list_lots"].expire_before == UNTIL


def test_the_account_without_tiers_names_it_and_without_points_fails() -> None:
    account = run(OWN, lambda: me(Fakes(("tier",))).get_account(pb.GetMyAccountRequest(), ()))
    assert account.balance.available == 70 and list(account.unavailable) == ["tier"]
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        run(OWN, lambda: me(Fakes(("list_lots",))).get_account(pb.GetMyAccountRequest(), ()))
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("ask", "field"),
    [
        (lambda m: m.list_postings(pb.ListMyPostingsRequest(page_size=-1), ()), "page_size"),
        (lambda m: m.list_consents(pb.ListMyConsentsRequest(page_size=-1), ()), "page_size"),
        (
            lambda m: m.get_account(pb.GetMyAccountRequest(expiring_within_days=3661), ()),
            "expiring_within_days",
        ),
        (lambda m: m.set_consents(pb.SetMyConsentsRequest(request_id=""), ()), "request_id"),
        (
            lambda m: m.redeem_reward(pb.RedeemMyRewardRequest(request_id="r 1"), ()),
            "request_id",
        ),
        (
            lambda m: m.list_coupon_offers(pb.ListMyCouponOffersRequest(page_size=-1), ()),
            "page_size",
        ),
        (lambda m: m.list_referrals(pb.ListMyReferralsRequest(page_size=-1), ()), "page_size"),
        (lambda m: m.claim_coupon(pb.ClaimMyCouponRequest(offer=OFFER), ()), "request_id"),
        (
            lambda m: m.claim_coupon(pb.ClaimMyCouponRequest(request_id="c-1", offer="x/1"), ()),
            "offer",
        ),
        (
            lambda m: m.claim_coupon(
                pb.ClaimMyCouponRequest(request_id="c-1", offer="couponOffers/ "), ()
            ),
            "offer",
        ),
        (lambda m: m.request_erasure(pb.RequestMyErasureRequest(), ()), "request_id"),
        (
            lambda m: m.confirm_erasure(pb.ConfirmMyErasureRequest(request_id="e-1"), ()),
            "code",
        ),
        (lambda m: m.confirm_erasure(pb.ConfirmMyErasureRequest(code="123456"), ()), "request_id"),
        (lambda m: m.cancel_erasure(pb.CancelMyErasureRequest(request_id="e 1"), ()), "request_id"),
    ],
)
def test_what_the_gateway_knows_is_checked_before_anyone_is_asked(
    ask: Callable[[Me], Awaitable[Any]], field: str
) -> None:
    fakes = Fakes()
    with pytest.raises(InvalidArgument) as refused:
        run(OWN, lambda: ask(me(fakes)))
    assert field in [v.field for v in refused.value.field_violations]
    assert fakes.asked == []


def test_consents_are_given_as_self_service_and_a_rotation_has_a_reason() -> None:
    fakes = Fakes()
    change = member_pb2.ConsentChange(purpose=member_pb2.CONSENT_PURPOSE_MARKETING_SMS)
    request = pb.SetMyConsentsRequest(request_id="c-1", changes=[change])
    run(OWN, lambda: me(fakes).set_consents(request, ()))
    rotation = pb.RotateMyMemberCodeRequest(request_id="r-1")
    run(OWN, lambda: me(fakes).rotate_member_code(rotation, ()))
    (_, consents), (_, rotated) = fakes.asked
    assert consents[0] == MEMBER and consents[-1] == SELF_SERVICE
    assert list(consents[2]) == [change]
    assert rotated == (MEMBER, "r-1", ROTATED_BY_MEMBER)


def test_offers_referrals_and_erasure_are_asked_for_the_tokens_member_with_its_request_ids() -> (
    None
):
    fakes = Fakes()
    mine = me(fakes)
    run(OWN, lambda: mine.list_coupon_offers(pb.ListMyCouponOffersRequest(page_size=7), ()))
    claim = pb.ClaimMyCouponRequest(request_id="c-1", offer=OFFER)
    run(OWN, lambda: mine.claim_coupon(claim, ()))
    run(OWN, lambda: mine.get_referral_code(pb.GetMyReferralCodeRequest(), ()))
    referrals = pb.ListMyReferralsRequest(page_size=3, page_token="t")
    run(OWN, lambda: mine.list_referrals(referrals, ()))
    run(OWN, lambda: mine.request_erasure(pb.RequestMyErasureRequest(request_id="e-1"), ()))
    confirm = pb.ConfirmMyErasureRequest(request_id="e-2", code=" 123456 ")
    run(OWN, lambda: mine.confirm_erasure(confirm, ()))
    run(OWN, lambda: mine.cancel_erasure(pb.CancelMyErasureRequest(request_id="e-3"), ()))
    run(OWN, lambda: mine.get_erasure_request(pb.GetMyErasureRequestRequest(), ()))
    assert fakes.asked == [
        ("offers", (MEMBER, 7, "")),
        ("claim", (MEMBER, "c-1", OFFER)),
        ("referral_code", (MEMBER,)),
        ("referrals", (MEMBER, 3, "t")),
        ("request_erasure", (MEMBER, "e-1")),
        ("confirm_erasure", (MEMBER, "e-2", "123456")),
        ("cancel_erasure", (MEMBER, "e-3")),
        ("erasure", (MEMBER,)),
    ]
    with pytest.raises(MemberTokenRequired):
        run(TILL, lambda: me(fakes).request_erasure(pb.RequestMyErasureRequest(request_id="x"), ()))
    assert len(fakes.asked) == 8
