"""A member asking to be erased themselves, over real gRPC channels with PostgreSQL and NATS:
the request with the member's own token, the confirmation code read back from engagement's
development sink, the cooling-off (the replica's clock moves), the sweep erasing through the
operator's path; sessions, refresh tokens, the member code and still-valid access tokens
revoked; cancelling, wrong codes, another member's token; and signing in again with the erased
member's phone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import grpc
import pytest_asyncio
from loyalty.engagement.v1 import transactional_pb2 as msg_pb
from loyalty.engagement.v1 import transactional_pb2_grpc
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import (
    identity_service_pb2_grpc,
    member_code_pb2,
    member_code_pb2_grpc,
    member_erasure_pb2_grpc,
    member_pb2,
    member_sign_in_pb2_grpc,
)
from loyalty.identity.v1 import member_erasure_pb2 as pb
from loyalty.identity.v1 import member_sign_in_pb2 as sign_pb
from loyalty_devstack.testing import ServiceRunner
from loyalty_identity.adapters.wechat import DevelopmentWeChatFake
from loyalty_identity.settings import ErasureSettings
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings

from tests.support.clients import As
from tests.support.clock import Clock
from tests.support.rpc import fails

APP = Caller(unit="mall", client_id="mall-app", scopes=frozenset({"members:sign_in"}))
ADMIN = Caller(unit="group", client_id="erasure-admin", scopes=frozenset({"admin"}))
DESK = Caller(unit="group", client_id="member-desk", scopes=frozenset({"members:manage"}))
TILL = Caller(unit="mall", client_id="mall-pos", scopes=frozenset({"earn"}))
COOLING_OFF = timedelta(hours=2)  # this replica's (the default is 7 days)


def new_phone() -> tuple[str, str]:
    """A fresh mobile number (150-159, uuid digits) as typed, and in E.164."""
    digits = f"15{'01235689'[uuid.uuid4().int % 8]}{uuid.uuid4().int % 10**8:08d}"
    return f"{digits[:3]} {digits[3:7]} {digits[7:]}", f"+86{digits}"


def rid() -> str:
    return uuid.uuid4().hex


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Erasing:
    channel: grpc.aio.Channel
    engagement_channel: grpc.aio.Channel
    clock: Clock

    def erasures(self, token: str) -> MemberStub:
        """The erasure service as the member's own token calls it."""
        return MemberStub(member_erasure_pb2_grpc.MemberErasureServiceStub(self.channel), token)

    def as_(self, caller: Caller) -> As:
        return As(member_erasure_pb2_grpc.MemberErasureServiceStub, self.channel, caller)

    def members(self, caller: Caller = ADMIN) -> As:
        return As(identity_service_pb2_grpc.IdentityServiceStub, self.channel, caller)

    def sign_in(self) -> As:
        return As(member_sign_in_pb2_grpc.MemberSignInServiceStub, self.channel, APP)

    async def sent(self, e164: str, kind: str) -> list[str]:
        """The codes of `kind` the development sink holds for a phone, newest first."""
        sink = As(
            transactional_pb2_grpc.TransactionalMessageServiceStub, self.engagement_channel, ADMIN
        )
        found = await sink.ListTransactionalMessages(
            msg_pb.ListTransactionalMessagesRequest(phone=e164)
        )
        return [m.body.split(" is ")[1][:6] for m in found.messages if m.kind == kind]

    async def signed_in(self, typed: str, e164: str) -> sign_pb.VerifySmsSignInResponse:
        """A whole sign-in by SMS, a minute after the last (one code a minute per phone)."""
        self.clock.advance(seconds=61)
        started = await self.sign_in().StartSmsSignIn(
            sign_pb.StartSmsSignInRequest(phone=typed, client_address=f"2001:db8::{rid()[:4]}")
        )
        (code, *_) = await self.sent(e164, "sign_in_code")
        done: sign_pb.VerifySmsSignInResponse = await self.sign_in().VerifySmsSignIn(
            sign_pb.VerifySmsSignInRequest(challenge=started.challenge, code=code, unit="mall")
        )
        return done

    async def requested(self) -> Requested:
        """A new member signed in by SMS who has asked to be erased (the code is sent)."""
        typed, e164 = new_phone()
        signed = await self.signed_in(typed, e164)
        member = signed.member.name
        own = self.erasures(signed.tokens.access_token)
        await own.RequestErasure(pb.RequestErasureRequest(member=member, request_id=rid()))
        return Requested(e164, signed, member, own)

    async def confirmed(self) -> Requested:
        """As `requested`, the request confirmed with the code sent."""
        asked = await self.requested()
        (code,) = await self.sent(asked.e164, "erasure_code")
        await asked.own.ConfirmErasure(
            pb.ConfirmErasureRequest(member=asked.member, code=code, request_id=rid())
        )
        return replace(asked, code=code)


@dataclass
class Requested:
    """A member who asked to be erased: their phone, sign-in, resource name, own stub."""

    e164: str
    signed: sign_pb.VerifySmsSignInResponse
    member: str
    own: MemberStub
    code: str = ""  # the confirmation code, once used


class MemberStub:
    """A stub whose every call carries the member's own access token."""

    def __init__(self, stub: object, token: str) -> None:
        self._stub, self._token = stub, token

    def __getattr__(self, name: str) -> Callable[[Any], Any]:
        method = getattr(self._stub, name)

        def call(request: Any) -> Any:
            return method(request, metadata=bearer(self._token), timeout=15)

        return call


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def erasure_identity(
    settings: Settings, engagement_service: RunningService
) -> AsyncIterator[tuple[RunningService, Clock]]:
    from loyalty_identity.app import SPEC

    clock = Clock()
    runner = ServiceRunner(settings)
    own = settings.model_copy(update={"engagement_target": engagement_service.target})
    service = await runner.start(
        SPEC,
        own,
        clock=clock,
        wechat=DevelopmentWeChatFake(),
        erasure=ErasureSettings(cooling_off_hours=COOLING_OFF.total_seconds() / 3600),
    )
    yield service, clock
    await runner.stop_all()


@pytest_asyncio.fixture(loop_scope="session")
async def erasing(
    erasure_identity: tuple[RunningService, Clock], engagement_service: RunningService
) -> AsyncIterator[Erasing]:
    service, clock = erasure_identity
    clock.reset()
    async with (
        grpc.aio.insecure_channel(service.target) as channel,
        grpc.aio.insecure_channel(engagement_service.target) as engagement_channel,
    ):
        yield Erasing(channel, engagement_channel, clock)
    clock.reset()


async def _state(erasing: Erasing, member: str) -> int:
    found: identity_pb.GetMemberResponse = await erasing.members().GetMember(
        identity_pb.GetMemberRequest(name=member)
    )
    return int(found.member.state)


# --- the whole path with the member's own token -----------------------------------------------


async def test_a_member_asks_confirms_and_is_erased_after_the_cooling_off_only(
    erasing: Erasing,
) -> None:
    typed, e164 = new_phone()
    signed = await erasing.signed_in(typed, e164)
    member, token = signed.member.name, signed.tokens.access_token
    other_session = await erasing.signed_in(typed, e164)  # a second device
    own = erasing.erasures(token)

    opened = (
        await own.RequestErasure(pb.RequestErasureRequest(member=member, request_id="r1"))
    ).erasure_request
    assert opened.state == pb.ERASURE_STATE_REQUESTED and opened.name == f"{member}/erasureRequest"
    assert opened.erase_after.ToDatetime() - opened.request_time.ToDatetime() == COOLING_OFF
    # A retry with the same request id opens nothing and sends nothing again.
    again = (
        await own.RequestErasure(pb.RequestErasureRequest(member=member, request_id="r1"))
    ).erasure_request
    assert again == opened
    (code,) = await erasing.sent(e164, "erasure_code")
    # Another request while this one is open is refused.
    twice = await fails(
        own.RequestErasure(pb.RequestErasureRequest(member=member, request_id="r2"))
    )
    assert (twice.code, twice.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "ERASURE_ALREADY_REQUESTED",
    )
    # Requested, not confirmed: the sweep leaves the member alone even past the cooling-off.
    erasing.clock.advance(hours=3)
    swept = await erasing.as_(ADMIN).RunDueErasures(pb.RunDueErasuresRequest())
    assert member not in swept.erased_members
    assert await _state(erasing, member) == member_pb2.MEMBER_STATE_ACTIVE
    erasing.clock.reset()  # back before the code's expiry

    confirmed = (
        await own.ConfirmErasure(
            pb.ConfirmErasureRequest(member=member, code=code, request_id="c1")
        )
    ).erasure_request
    assert confirmed.state == pb.ERASURE_STATE_CONFIRMED and confirmed.HasField("confirm_time")
    seen = (await own.GetErasureRequest(pb.GetErasureRequestRequest(member=member))).erasure_request
    assert seen.state == pb.ERASURE_STATE_CONFIRMED and seen.erase_after == opened.erase_after

    # Confirmed, but within the cooling-off: not erased.
    erasing.clock.advance(hours=1)
    swept = await erasing.as_(ADMIN).RunDueErasures(pb.RunDueErasuresRequest())
    assert member not in swept.erased_members
    assert await _state(erasing, member) == member_pb2.MEMBER_STATE_ACTIVE

    # Past it: a code the member shows now, then the sweep.
    erasing.clock.advance(hours=1, minutes=5)  # (the sign-ins moved the clock 2 minutes)
    shown = await member_code_pb2_grpc.MemberCodeServiceStub(erasing.channel).GetMemberCode(
        member_code_pb2.GetMemberCodeRequest(member=member), metadata=bearer(token), timeout=15
    )
    swept = await erasing.as_(ADMIN).RunDueErasures(pb.RunDueErasuresRequest())
    assert member in swept.erased_members
    assert await _state(erasing, member) == member_pb2.MEMBER_STATE_ERASED
    done = (
        await erasing.as_(DESK).GetErasureRequest(pb.GetErasureRequestRequest(member=member))
    ).erasure_request
    assert done.state == pb.ERASURE_STATE_DONE and done.HasField("done_time")

    # Every session ended: neither device's refresh token refreshes.
    for tokens in (signed.tokens, other_session.tokens):
        gone = await fails(
            erasing.sign_in().RefreshMemberToken(
                sign_pb.RefreshMemberTokenRequest(refresh_token=tokens.refresh_token)
            )
        )
        assert (gone.code, gone.reason) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "REFRESH_TOKEN_REVOKED",
        )
    # The still-valid access token is refused by identity.
    refused = await fails(own.GetErasureRequest(pb.GetErasureRequestRequest(member=member)))
    assert (refused.code, refused.reason) == (grpc.StatusCode.UNAUTHENTICATED, "MEMBER_ERASED")
    # The code shown before no longer resolves at a till: its secret went with the member.
    unknown = await fails(
        erasing.members(TILL).ResolveMember(
            identity_pb.ResolveMemberRequest(
                identity=member_pb2.Identity(type="member_code", value=shown.member_code.code)
            )
        )
    )
    assert unknown.reason == "MEMBER_CODE_UNKNOWN"
    # Nothing more is due for the member.
    swept = await erasing.as_(ADMIN).RunDueErasures(pb.RunDueErasuresRequest())
    assert member not in swept.erased_members

    # Signing in with the phone again registers a new member: the erased one stays erased.
    again_in = await erasing.signed_in(typed, e164)
    assert again_in.registered and again_in.member.name != member
    assert await _state(erasing, member) == member_pb2.MEMBER_STATE_ERASED


async def test_a_member_cancels_and_the_confirmed_request_never_runs(erasing: Erasing) -> None:
    asked = await erasing.confirmed()
    member, own, code = asked.member, asked.own, asked.code
    cancel = pb.CancelErasureRequest(member=member, request_id=rid())
    cancelled = (await own.CancelErasure(cancel)).erasure_request
    assert cancelled.state == pb.ERASURE_STATE_CANCELLED and cancelled.cancel_reason == "member"
    assert (await own.CancelErasure(cancel)).erasure_request == cancelled
    refused = await fails(
        own.ConfirmErasure(pb.ConfirmErasureRequest(member=member, code=code, request_id=rid()))
    )
    assert refused.reason == "ERASURE_CANCELLED"
    erasing.clock.advance(hours=3)
    swept = await erasing.as_(ADMIN).RunDueErasures(pb.RunDueErasuresRequest())
    assert member not in swept.erased_members
    assert await _state(erasing, member) == member_pb2.MEMBER_STATE_ACTIVE
    # A new request may be opened after a cancelled one.
    erasing.clock.advance(seconds=1)
    reopened = (
        await own.RequestErasure(pb.RequestErasureRequest(member=member, request_id=rid()))
    ).erasure_request
    assert reopened.state == pb.ERASURE_STATE_REQUESTED


async def test_five_wrong_codes_cancel_the_request(erasing: Erasing) -> None:
    asked = await erasing.requested()
    e164, member, own = asked.e164, asked.member, asked.own
    (code,) = await erasing.sent(e164, "erasure_code")
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for left in (4, 3, 2, 1):
        attempt = pb.ConfirmErasureRequest(member=member, code=wrong, request_id=rid())
        refused = await fails(own.ConfirmErasure(attempt))
        assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
        assert (refused.reason, refused.metadata["attempts_left"]) == (
            "ERASURE_CODE_WRONG",
            str(left),
        )
        # The same call retried counts no second attempt.
        retried = await fails(own.ConfirmErasure(attempt))
        assert retried.metadata["attempts_left"] == str(left)
    last = await fails(
        own.ConfirmErasure(pb.ConfirmErasureRequest(member=member, code=wrong, request_id=rid()))
    )
    assert last.reason == "ERASURE_CODE_ATTEMPTS"
    right = await fails(
        own.ConfirmErasure(pb.ConfirmErasureRequest(member=member, code=code, request_id=rid()))
    )
    assert right.reason == "ERASURE_CODE_ATTEMPTS"
    seen = (await own.GetErasureRequest(pb.GetErasureRequestRequest(member=member))).erasure_request
    assert seen.state == pb.ERASURE_STATE_CANCELLED and seen.cancel_reason == "code_attempts"
    # A bad code is a field violation, counted nowhere.
    bad = await fails(
        own.ConfirmErasure(pb.ConfirmErasureRequest(member=member, code="12ab", request_id=rid()))
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and bad.fields == ["code"]


async def test_an_expired_code_confirms_nothing_and_the_member_asks_again(erasing: Erasing) -> None:
    asked = await erasing.requested()
    e164, member, own = asked.e164, asked.member, asked.own
    (code,) = await erasing.sent(e164, "erasure_code")
    erasing.clock.advance(minutes=16)
    late = await fails(
        own.ConfirmErasure(pb.ConfirmErasureRequest(member=member, code=code, request_id=rid()))
    )
    assert late.reason == "ERASURE_CODE_EXPIRED"
    fresh = (
        await own.RequestErasure(pb.RequestErasureRequest(member=member, request_id=rid()))
    ).erasure_request
    assert fresh.state == pb.ERASURE_STATE_REQUESTED
    assert len(await erasing.sent(e164, "erasure_code")) == 2


async def test_another_members_token_is_refused_and_an_operator_acts_for_the_member(
    erasing: Erasing,
) -> None:
    mine = await erasing.signed_in(*new_phone())
    typed, e164 = new_phone()
    theirs = await erasing.signed_in(typed, e164)
    own = erasing.erasures(mine.tokens.access_token)
    for call in (
        own.RequestErasure(pb.RequestErasureRequest(member=theirs.member.name, request_id=rid())),
        own.GetErasureRequest(pb.GetErasureRequestRequest(member=theirs.member.name)),
        own.CancelErasure(pb.CancelErasureRequest(member=theirs.member.name, request_id=rid())),
        own.RunDueErasures(pb.RunDueErasuresRequest()),
    ):
        refused = await fails(call)
        assert refused.code == grpc.StatusCode.PERMISSION_DENIED
        assert refused.reason in ("MEMBER_MISMATCH", "MEMBER_TOKEN_REFUSED")
    # The member desk asks on the member's behalf; the code still goes to the member.
    desk = erasing.as_(DESK)
    nothing = await fails(
        desk.GetErasureRequest(pb.GetErasureRequestRequest(member=theirs.member.name))
    )
    assert (nothing.code, nothing.reason) == (
        grpc.StatusCode.NOT_FOUND,
        "ERASURE_REQUEST_NOT_FOUND",
    )
    await desk.RequestErasure(pb.RequestErasureRequest(member=theirs.member.name, request_id=rid()))
    assert len(await erasing.sent(e164, "erasure_code")) == 1
    cancelled = await desk.CancelErasure(
        pb.CancelErasureRequest(member=theirs.member.name, request_id=rid())
    )
    assert cancelled.erasure_request.cancel_reason == "operator"
    # A sweep needs the admin scope.
    denied = await fails(desk.RunDueErasures(pb.RunDueErasuresRequest()))
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED


async def test_the_operators_erasure_revokes_the_member_token_and_ends_the_open_request(
    erasing: Erasing,
) -> None:
    asked = await erasing.requested()
    signed, member, own = asked.signed, asked.member, asked.own
    await erasing.members(DESK).EraseMember(
        identity_pb.EraseMemberRequest(name=member, request_id=rid())
    )
    refused = await fails(own.GetErasureRequest(pb.GetErasureRequestRequest(member=member)))
    assert refused.reason == "MEMBER_ERASED"
    done = await erasing.as_(DESK).GetErasureRequest(pb.GetErasureRequestRequest(member=member))
    assert done.erasure_request.state == pb.ERASURE_STATE_DONE
    gone = await fails(
        erasing.sign_in().RefreshMemberToken(
            sign_pb.RefreshMemberTokenRequest(refresh_token=signed.tokens.refresh_token)
        )
    )
    assert gone.reason == "REFRESH_TOKEN_REVOKED"


async def test_a_token_of_an_ended_session_is_refused_by_identity_at_once(
    erasing: Erasing,
) -> None:
    signed = await erasing.signed_in(*new_phone())
    member, token = signed.member.name, signed.tokens.access_token
    codes = member_code_pb2_grpc.MemberCodeServiceStub(erasing.channel)
    # Used once while open: its verified signature is kept by the process, its session is not.
    await codes.GetMemberCode(
        member_code_pb2.GetMemberCodeRequest(member=member), metadata=bearer(token), timeout=15
    )
    await erasing.sign_in().SignOut(
        sign_pb.SignOutRequest(refresh_token=signed.tokens.refresh_token)
    )
    refused = await fails(
        codes.GetMemberCode(
            member_code_pb2.GetMemberCodeRequest(member=member), metadata=bearer(token), timeout=15
        )
    )
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "MEMBER_TOKEN_REVOKED",
    )
    assert refused.metadata["session_ended"] == "sign_out"


async def test_two_sweeps_at_once_erase_a_member_once(erasing: Erasing) -> None:
    asked = await erasing.confirmed()
    member = asked.member
    erasing.clock.advance(hours=3)
    admin = erasing.as_(ADMIN)
    answers = await asyncio.gather(
        admin.RunDueErasures(pb.RunDueErasuresRequest()),
        admin.RunDueErasures(pb.RunDueErasuresRequest()),
    )
    assert sum(list(a.erased_members).count(member) for a in answers) == 1
    assert await _state(erasing, member) == member_pb2.MEMBER_STATE_ERASED
