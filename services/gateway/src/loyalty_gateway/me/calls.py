"""The member page's calls to the services.

Signing in (MemberSignInService) is the gateway's own call, as the member app's backend makes
it: a short service token of the client `gateway-me` with `members:sign_in`, the member's
device address passed on for identity's limits. Everything else is called with the member's
own access token (`Authorization: Bearer`), so each service holds the member to its own data
(the rules naming the member field): never with an operator's or the gateway's credentials.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.benefits.v1.benefits_service_pb2_grpc import BenefitsServiceStub
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import member_code_pb2 as code_pb
from loyalty.identity.v1 import member_pb2
from loyalty.identity.v1 import member_sign_in_pb2 as sign_in_pb
from loyalty.identity.v1.identity_service_pb2_grpc import IdentityServiceStub
from loyalty.identity.v1.member_code_pb2_grpc import MemberCodeServiceStub
from loyalty.identity.v1.member_sign_in_pb2_grpc import MemberSignInServiceStub
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1.points_service_pb2_grpc import PointsServiceStub
from loyalty_kit.auth import ServiceCredentials
from loyalty_kit.caller import Caller
from loyalty_kit.kernel.units import GROUP
from loyalty_kit.scopes import MEMBERS_SIGN_IN
from loyalty_kit.status import error_info, from_rpc_error

from loyalty_gateway.me.cookie import Tokens

CLIENT_ID = "gateway-me"
CALLER = Caller(unit=GROUP, client_id=CLIENT_ID, scopes=frozenset({MEMBERS_SIGN_IN}))
SOURCE = "member:self-service"  # where a consent changed at this page was given
EXPIRING_WITHIN_DAYS = 30
LOTS_ON_PAGE = 20  # the page's own table; the rest on the lots page, a page at a time
LOTS_PER_PAGE = 50
ROTATED_HERE = "rotated by the member on the member page"
PURPOSES = (
    member_pb2.CONSENT_PURPOSE_MARKETING_SMS,
    member_pb2.CONSENT_PURPOSE_MARKETING_PUSH,
    member_pb2.CONSENT_PURPOSE_PERSONALISED_OFFERS,
    member_pb2.CONSENT_PURPOSE_PARTNER_SHARING,
)


@dataclass(frozen=True)
class Refusal(Exception):
    """A service said no: its gRPC code, ErrorInfo reason and metadata, and how long to wait
    (RetryInfo) when it says."""

    code: grpc.StatusCode
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    retry_seconds: int = 0

    @staticmethod
    def of(error: grpc.aio.AioRpcError) -> Refusal:
        status = from_rpc_error(error)
        reason, metadata, retry = "", {}, 0
        if status is not None:
            info = error_info(status)
            if info is not None:
                reason, metadata = info.reason, dict(info.metadata)
            for detail in status.details:
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    found = error_details_pb2.RetryInfo()
                    detail.Unpack(found)
                    delay = found.retry_delay
                    retry = max(1, math.ceil(delay.seconds + delay.nanos / 1e9))
        return Refusal(error.code(), reason, metadata, retry)


def tokens_of(message: sign_in_pb.MemberTokens) -> Tokens:
    return Tokens(
        access=message.access_token,
        access_expires=_seconds(message.access_token_expire_time),
        refresh=message.refresh_token,
        refresh_expires=_seconds(message.refresh_token_expire_time),
        session=message.session,
    )


def _seconds(stamp: Any) -> float:
    return float(stamp.seconds) + float(stamp.nanos) / 1e9


@dataclass(frozen=True)
class Started:
    challenge: str
    expires: float  # Unix seconds
    resend: float


@dataclass(frozen=True)
class Overview:
    """What the page shows beside the code: the member, balance, lots, coupons, consents."""

    member: member_pb2.Member
    balance: points_pb.Balance
    lots: list[points_pb.Lot]
    coupons: list[benefits_pb.Coupon]
    consent_events: list[identity_pb.ConsentEvent]
    more_lots: bool = False  # lots beyond those listed (the lots page shows them)


@dataclass(frozen=True)
class Lots:
    """A page of the member's lots, and the token of the next page ("" at the end)."""

    lots: list[points_pb.Lot]
    next_page_token: str


def bearer(tokens: Tokens) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {tokens.access}"),)


class ServiceCalls:
    """The calls over the gateway's channels (its Backends)."""

    def __init__(self, backends: Any, credentials: ServiceCredentials, deadline: float) -> None:
        self.backends = backends
        self.credentials = credentials
        self.deadline = deadline

    def _channel(self, service: str) -> grpc.aio.Channel:
        found: grpc.aio.Channel = self.backends.channels[service]
        return found

    def _sign_in(self) -> MemberSignInServiceStub:
        return MemberSignInServiceStub(self._channel("identity"))

    async def _as_page(self, method: Any, request: Any) -> Any:
        """`method(request)` as the page itself (its service credentials), a refusal raised as
        a `Refusal`."""
        try:
            return await method(
                request, metadata=self.credentials.metadata(CALLER), timeout=self.deadline
            )
        except grpc.aio.AioRpcError as error:
            raise Refusal.of(error) from None

    async def _as_member(self, method: Any, request: Any, tokens: Tokens) -> Any:
        """`method(request)` with the member's own token, a refusal raised as a `Refusal`."""
        try:
            return await method(request, metadata=bearer(tokens), timeout=self.deadline)
        except grpc.aio.AioRpcError as error:
            raise Refusal.of(error) from None

    async def start(self, phone: str, client_address: str) -> Started:
        reply = await self._as_page(
            self._sign_in().StartSmsSignIn,
            sign_in_pb.StartSmsSignInRequest(phone=phone, client_address=client_address),
        )
        return Started(reply.challenge, _seconds(reply.expire_time), _seconds(reply.resend_time))

    async def verify(self, challenge: str, code: str, unit: str) -> tuple[str, Tokens]:
        reply = await self._as_page(
            self._sign_in().VerifySmsSignIn,
            sign_in_pb.VerifySmsSignInRequest(challenge=challenge, code=code, unit=unit),
        )
        return reply.member.name, tokens_of(reply.tokens)

    async def refresh(self, refresh_token: str) -> Tokens:
        reply = await self._as_page(
            self._sign_in().RefreshMemberToken,
            sign_in_pb.RefreshMemberTokenRequest(refresh_token=refresh_token),
        )
        return tokens_of(reply.tokens)

    async def sign_out(self, refresh_token: str) -> None:
        await self._as_page(
            self._sign_in().SignOut, sign_in_pb.SignOutRequest(refresh_token=refresh_token)
        )

    async def member_code(self, member: str, tokens: Tokens) -> code_pb.MemberCode:
        reply = await self._as_member(
            MemberCodeServiceStub(self._channel("identity")).GetMemberCode,
            code_pb.GetMemberCodeRequest(member=member),
            tokens,
        )
        found: code_pb.MemberCode = reply.member_code
        return found

    async def overview(self, member: str, tokens: Tokens) -> Overview:
        identity = IdentityServiceStub(self._channel("identity"))
        points = PointsServiceStub(self._channel("points"))
        benefits = BenefitsServiceStub(self._channel("benefits"))
        own = {"metadata": bearer(tokens), "timeout": self.deadline}
        try:
            got, balance, lots, coupons, events = await asyncio.gather(
                identity.GetMember(identity_pb.GetMemberRequest(name=member), **own),
                points.GetBalance(
                    points_pb.GetBalanceRequest(
                        member=member, expiring_within_days=EXPIRING_WITHIN_DAYS
                    ),
                    **own,
                ),
                points.ListLots(
                    points_pb.ListLotsRequest(member=member, page_size=LOTS_ON_PAGE), **own
                ),
                benefits.ListCoupons(
                    benefits_pb.ListCouponsRequest(
                        member=member, state=benefits_pb.COUPON_STATE_ISSUED, page_size=50
                    ),
                    **own,
                ),
                identity.ListConsentEvents(
                    identity_pb.ListConsentEventsRequest(member=member, page_size=20), **own
                ),
            )
        except grpc.aio.AioRpcError as error:
            raise Refusal.of(error) from None
        return Overview(
            got.member,
            balance.balance,
            sorted(lots.lots, key=lambda lot: _seconds(lot.expire_time) or math.inf),
            list(coupons.coupons),
            list(events.consent_events),
            more_lots=bool(lots.next_page_token),
        )

    async def lots(self, member: str, tokens: Tokens, page_token: str) -> Lots:
        """A page of the member's lots (ListLots with its own token)."""
        reply = await self._as_member(
            PointsServiceStub(self._channel("points")).ListLots,
            points_pb.ListLotsRequest(
                member=member, page_size=LOTS_PER_PAGE, page_token=page_token
            ),
            tokens,
        )
        return Lots(list(reply.lots), reply.next_page_token)

    async def rotate_code(self, member: str, tokens: Tokens, request_id: str) -> code_pb.MemberCode:
        """A new code secret (RotateMemberCode with the member's own token): every code shown
        before stops working at once."""
        reply = await self._as_member(
            MemberCodeServiceStub(self._channel("identity")).RotateMemberCode,
            code_pb.RotateMemberCodeRequest(
                member=member, request_id=request_id, reason=ROTATED_HERE
            ),
            tokens,
        )
        found: code_pb.MemberCode = reply.member_code
        return found

    async def set_consent(
        self, member: str, tokens: Tokens, purpose: int, granted: bool, request_id: str
    ) -> None:
        await self._as_member(
            IdentityServiceStub(self._channel("identity")).SetConsents,
            identity_pb.SetConsentsRequest(
                member=member,
                request_id=request_id,
                changes=[member_pb2.ConsentChange(purpose=purpose, granted=granted)],  # type: ignore[arg-type]
                source=SOURCE,
            ),
            tokens,
        )
