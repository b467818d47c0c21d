"""Members signing in themselves, over real gRPC channels with PostgreSQL and NATS: a code sent
by SMS through engagement's transactional channel (read back from its development sink), one-tap
registration, the code's rules and limits, member tokens, refresh rotation and reuse, sign-out
and sign-out everywhere, WeChat through the development fake.

The identity replica under test is this module's own: it reaches this run's engagement service,
and its clock moves (expired codes, limits that pass)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import grpc
import jwt
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
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
from loyalty.identity.v1 import member_erasure_pb2 as erasure_pb
from loyalty.identity.v1 import member_sign_in_pb2 as pb
from loyalty_devstack.testing import ServiceRunner
from loyalty_identity.adapters.wechat import DevelopmentWeChatFake
from loyalty_kit.auth import TokenVerifier
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings
from loyalty_kit.status import from_rpc_error

from tests.support.clients import As
from tests.support.clock import Clock
from tests.support.rpc import fails

APP = Caller(unit="mall", client_id="mall-app", scopes=frozenset({"members:sign_in"}))
ADMIN = Caller(unit="group", client_id="sign-in-admin", scopes=frozenset({"admin"}))
TILL = Caller(unit="mall", client_id="mall-pos", scopes=frozenset({"earn"}))


def new_phone() -> tuple[str, str]:
    """A fresh mobile number as a member types it, and in E.164."""
    digits = f"139{random.randrange(10**8):08d}"
    return f"{digits[:3]} {digits[3:7]} {digits[7:]}", f"+86{digits}"


def new_address() -> str:
    """A client address of its own (the per-address limit counts by it)."""
    return f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"


@dataclass
class SignIn:
    channel: grpc.aio.Channel
    engagement_channel: grpc.aio.Channel
    clock: Clock
    verifier: TokenVerifier

    def as_(self, caller: Caller = APP) -> As:
        return As(member_sign_in_pb2_grpc.MemberSignInServiceStub, self.channel, caller)

    def members(self, caller: Caller = ADMIN) -> As:
        return As(identity_service_pb2_grpc.IdentityServiceStub, self.channel, caller)

    async def start(self, phone: str, address: str = "") -> pb.StartSmsSignInResponse:
        found: pb.StartSmsSignInResponse = await self.as_().StartSmsSignIn(
            pb.StartSmsSignInRequest(phone=phone, client_address=address or new_address())
        )
        return found

    async def codes(self, e164: str) -> list[str]:
        """The sign-in codes the development sink holds for a phone, newest first."""
        sink = As(
            transactional_pb2_grpc.TransactionalMessageServiceStub,
            self.engagement_channel,
            ADMIN,
        )
        found = await sink.ListTransactionalMessages(
            msg_pb.ListTransactionalMessagesRequest(phone=e164)
        )
        return [m.body.split("code is ")[1][:6] for m in found.messages]

    async def verify(self, challenge: str, code: str) -> pb.VerifySmsSignInResponse:
        found: pb.VerifySmsSignInResponse = await self.as_().VerifySmsSignIn(
            pb.VerifySmsSignInRequest(challenge=challenge, code=code, unit="mall")
        )
        return found

    async def sign_in(self, typed: str, e164: str) -> pb.VerifySmsSignInResponse:
        """A whole sign-in by SMS, a minute after the last (one code a minute per phone)."""
        self.clock.advance(seconds=61)
        started = await self.start(typed)
        (code, *_) = await self.codes(e164)
        return await self.verify(started.challenge, code)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def sign_in_identity(
    settings: Settings, engagement_service: RunningService
) -> AsyncIterator[tuple[RunningService, Clock]]:
    from loyalty_identity.app import SPEC

    clock = Clock()
    runner = ServiceRunner(settings)
    own = settings.model_copy(update={"engagement_target": engagement_service.target})
    service = await runner.start(SPEC, own, clock=clock, wechat=DevelopmentWeChatFake())
    yield service, clock
    await runner.stop_all()


@pytest_asyncio.fixture(loop_scope="session")
async def signin(
    settings: Settings,
    sign_in_identity: tuple[RunningService, Clock],
    engagement_service: RunningService,
) -> AsyncIterator[SignIn]:
    service, clock = sign_in_identity
    clock.reset()
    async with (
        grpc.aio.insecure_channel(service.target) as channel,
        grpc.aio.insecure_channel(engagement_service.target) as engagement_channel,
    ):
        yield SignIn(
            channel, engagement_channel, clock, TokenVerifier.from_settings(settings.data_dir)
        )
    clock.reset()


def member_caller(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


# --- one-tap registration, the same member next time, tokens --------------------------------


async def test_the_first_sign_in_registers_the_member_and_the_second_finds_them(
    signin: SignIn,
) -> None:
    typed, e164 = new_phone()
    first = await signin.sign_in(typed, e164)
    assert first.registered and first.member.name.startswith("members/")
    member_id = first.member.name.removeprefix("members/")
    again = await signin.sign_in(typed, e164)
    assert not again.registered and again.member.name == first.member.name
    # The phone is the member's identity: a till resolves it to the same member.
    resolved = await signin.members(TILL).ResolveMember(
        identity_pb.ResolveMemberRequest(identity=member_pb2.Identity(type="phone", value=typed))
    )
    assert resolved.member.name == first.member.name
    # The access token speaks for that member only, with the member scopes and the session.
    tokens = first.tokens
    caller = signin.verifier.verify(tokens.access_token)
    assert caller.member == member_id and caller.client_id == f"member:{member_id}"
    assert caller.scopes == {"self:read", "self:write", "self:redeem"} and caller.unit == ""
    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    assert claims["sid"] == tokens.session.removeprefix("memberSessions/")
    lifetime = tokens.access_token_expire_time.seconds - claims["iat"]
    assert lifetime == 600
    refresh_days = (
        tokens.refresh_token_expire_time.ToDatetime() - tokens.access_token_expire_time.ToDatetime()
    )
    assert timedelta(days=29) < refresh_days <= timedelta(days=30)
    assert tokens.refresh_token and tokens.session != again.tokens.session


async def test_a_member_token_ends_its_own_sessions_and_is_refused_for_another_member(
    signin: SignIn,
) -> None:
    mine = await signin.sign_in(*new_phone())
    other = await signin.sign_in(*new_phone())
    stub = member_sign_in_pb2_grpc.MemberSignInServiceStub(signin.channel)
    refused = await fails(
        stub.SignOutEverywhere(
            pb.SignOutEverywhereRequest(member=other.member.name),
            metadata=member_caller(mine.tokens.access_token),
            timeout=15,
        )
    )
    assert refused.code == grpc.StatusCode.PERMISSION_DENIED
    assert refused.reason == "MEMBER_MISMATCH"
    # Nor does a member token reach a method members may not call.
    elsewhere = await fails(
        stub.StartSmsSignIn(
            pb.StartSmsSignInRequest(phone=new_phone()[0], client_address=new_address()),
            metadata=member_caller(mine.tokens.access_token),
            timeout=15,
        )
    )
    assert elsewhere.reason == "MEMBER_TOKEN_REFUSED"
    ended = await stub.SignOutEverywhere(
        pb.SignOutEverywhereRequest(member=mine.member.name),
        metadata=member_caller(mine.tokens.access_token),
        timeout=15,
    )
    assert ended.sessions_ended == 1
    gone = await fails(
        signin.as_().RefreshMemberToken(
            pb.RefreshMemberTokenRequest(refresh_token=mine.tokens.refresh_token)
        )
    )
    assert gone.reason == "REFRESH_TOKEN_REVOKED"
    # The other member's session is untouched.
    await signin.as_().RefreshMemberToken(
        pb.RefreshMemberTokenRequest(refresh_token=other.tokens.refresh_token)
    )


# --- the code's rules -------------------------------------------------------------------------


async def test_wrong_codes_say_how_many_attempts_are_left_and_the_fifth_exhausts_the_code(
    signin: SignIn,
) -> None:
    typed, e164 = new_phone()
    started = await signin.start(typed)
    (code,) = await signin.codes(e164)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for left in (4, 3, 2, 1, 0):
        refused = await fails(signin.verify(started.challenge, wrong))
        assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
        assert (refused.reason, refused.metadata["attempts_left"]) == ("CODE_WRONG", str(left))
    exhausted = await fails(signin.verify(started.challenge, code))  # even the right one now
    assert exhausted.reason == "CODE_EXHAUSTED"


async def test_a_used_code_is_refused_and_an_expired_one_too(signin: SignIn) -> None:
    typed, e164 = new_phone()
    started = await signin.start(typed)
    (code,) = await signin.codes(e164)
    await signin.verify(started.challenge, code)
    replayed = await fails(signin.verify(started.challenge, code))
    assert replayed.reason == "CODE_USED"

    typed, e164 = new_phone()
    started = await signin.start(typed)
    (code,) = await signin.codes(e164)
    signin.clock.advance(minutes=5, seconds=1)
    expired = await fails(signin.verify(started.challenge, code))
    assert expired.reason == "CODE_EXPIRED"
    unknown = await fails(signin.verify(f"signInChallenges/{uuid.uuid4()}", code))
    assert unknown.reason == "CHALLENGE_NOT_FOUND"
    bad = await fails(signin.verify("challenges/x", "12a"))
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad.fields) == {"challenge", "code"}


async def test_two_verifications_of_one_code_at_once_open_one_session(signin: SignIn) -> None:
    typed, e164 = new_phone()
    started = await signin.start(typed)
    (code,) = await signin.codes(e164)
    outcomes = await asyncio.gather(
        signin.verify(started.challenge, code),
        signin.verify(started.challenge, code),
        return_exceptions=True,
    )
    signed = [o for o in outcomes if isinstance(o, pb.VerifySmsSignInResponse)]
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(signed) == 1 and len(refused) == 1, outcomes
    ended = await signin.as_(ADMIN).SignOutEverywhere(
        pb.SignOutEverywhereRequest(member=signed[0].member.name)
    )
    assert ended.sessions_ended == 1


# --- limits, and what a start reveals ---------------------------------------------------------


def retry_after(error: grpc.aio.AioRpcError) -> float:
    status = from_rpc_error(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    raise AssertionError("no RetryInfo")


async def test_codes_to_one_phone_are_limited_per_minute_and_per_hour(signin: SignIn) -> None:
    typed, e164 = new_phone()
    first = await signin.start(typed)
    assert first.resend_time.ToDatetime() - first.expire_time.ToDatetime() == timedelta(minutes=-4)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await signin.start(typed)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 0 < retry_after(raised.value) <= 60
    refused = await fails(signin.start(typed))
    assert (refused.reason, refused.metadata["limit"]) == ("SIGN_IN_RATE_LIMITED", "phone")
    for _ in range(4):  # a minute apart: five in the hour
        signin.clock.advance(seconds=61)
        await signin.start(typed)
    signin.clock.advance(seconds=61)
    hourly = await fails(signin.start(typed))
    assert hourly.reason == "SIGN_IN_RATE_LIMITED"
    assert 3000 < float(hourly.metadata["retry_after_seconds"]) <= 3600
    assert len(await signin.codes(e164)) == 5  # refused starts sent nothing


async def test_one_address_asking_codes_for_many_phones_is_refused_after_twenty(
    signin: SignIn,
) -> None:
    address = new_address()
    for _ in range(20):
        await signin.start(new_phone()[0], address)
    typed, e164 = new_phone()
    refused = await fails(signin.start(typed, address))
    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.metadata["limit"] == "client_address"
    assert await signin.codes(e164) == []
    await signin.start(typed)  # the same phone from another address is served


async def test_a_start_answers_a_known_and_an_unknown_phone_alike(signin: SignIn) -> None:
    known, known_e164 = new_phone()
    await signin.sign_in(known, known_e164)
    signin.clock.advance(seconds=61)
    unknown, unknown_e164 = new_phone()
    answers = [await signin.start(known), await signin.start(unknown)]
    for answer in answers:
        assert sorted(f.name for f, _ in answer.ListFields()) == [
            "challenge",
            "expire_time",
            "resend_time",
        ]
        assert answer.expire_time.ToDatetime() - answer.resend_time.ToDatetime() == timedelta(
            minutes=4
        )
    assert len(await signin.codes(known_e164)) == 2 and len(await signin.codes(unknown_e164)) == 1


# --- refresh, sign-out, erasure, suspension ---------------------------------------------------


async def test_a_refresh_rotates_the_pair_and_a_reused_token_ends_the_session(
    signin: SignIn,
) -> None:
    signed = await signin.sign_in(*new_phone())
    first = signed.tokens.refresh_token
    rotated = (
        await signin.as_().RefreshMemberToken(pb.RefreshMemberTokenRequest(refresh_token=first))
    ).tokens
    assert rotated.refresh_token != first and rotated.session == signed.tokens.session
    assert (
        signin.verifier.verify(rotated.access_token).member
        == signin.verifier.verify(signed.tokens.access_token).member
    )
    reused = await fails(
        signin.as_().RefreshMemberToken(pb.RefreshMemberTokenRequest(refresh_token=first))
    )
    assert (reused.code, reused.reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "REFRESH_TOKEN_REUSED",
    )
    # The whole session is gone: the rotated token, in the right hands or not, refreshes nothing.
    after = await fails(
        signin.as_().RefreshMemberToken(
            pb.RefreshMemberTokenRequest(refresh_token=rotated.refresh_token)
        )
    )
    assert after.reason == "REFRESH_TOKEN_REVOKED"
    unknown = await fails(
        signin.as_().RefreshMemberToken(pb.RefreshMemberTokenRequest(refresh_token="nope"))
    )
    assert unknown.reason == "REFRESH_TOKEN_INVALID"


async def test_sign_out_ends_the_session_and_erasure_ends_them_all(signin: SignIn) -> None:
    typed, e164 = new_phone()
    one = await signin.sign_in(typed, e164)
    signin.clock.advance(seconds=61)
    two = await signin.sign_in(typed, e164)
    out = await signin.as_().SignOut(pb.SignOutRequest(refresh_token=one.tokens.refresh_token))
    assert out.session == one.tokens.session
    ended = await fails(
        signin.as_().RefreshMemberToken(
            pb.RefreshMemberTokenRequest(refresh_token=one.tokens.refresh_token)
        )
    )
    assert ended.reason == "REFRESH_TOKEN_REVOKED"
    signin.clock.advance(seconds=61)
    pending = await signin.start(typed)  # a code on its way when the member is erased
    (code, *_) = await signin.codes(e164)
    await signin.members().EraseMember(
        identity_pb.EraseMemberRequest(name=two.member.name, request_id=uuid.uuid4().hex)
    )
    forgotten = await fails(signin.verify(pending.challenge, code))
    assert forgotten.reason == "CHALLENGE_NOT_FOUND"  # the phone's challenges went with it
    erased = await fails(
        signin.as_().RefreshMemberToken(
            pb.RefreshMemberTokenRequest(refresh_token=two.tokens.refresh_token)
        )
    )
    assert erased.reason == "REFRESH_TOKEN_REVOKED"
    # The phone is free again: its next sign-in is a new member.
    signin.clock.advance(seconds=61)
    again = await signin.sign_in(typed, e164)
    assert again.registered and again.member.name != two.member.name


async def test_a_suspended_member_cannot_sign_in(signin: SignIn) -> None:
    typed, e164 = new_phone()
    signed = await signin.sign_in(typed, e164)
    await signin.members().SuspendMember(
        identity_pb.SuspendMemberRequest(
            name=signed.member.name, reason="fraud review", request_id=uuid.uuid4().hex
        )
    )
    signin.clock.advance(seconds=61)
    started = await signin.start(typed)
    (code, *_) = await signin.codes(e164)
    refused = await fails(signin.verify(started.challenge, code))
    assert refused.reason == "MEMBER_SUSPENDED"
    used = await fails(signin.verify(started.challenge, code))  # no second try with it
    assert used.reason == "CODE_USED"
    stopped = await fails(
        signin.as_().RefreshMemberToken(
            pb.RefreshMemberTokenRequest(refresh_token=signed.tokens.refresh_token)
        )
    )
    assert stopped.reason == "MEMBER_SUSPENDED"


async def test_signing_in_needs_the_sign_in_scope(signin: SignIn) -> None:
    refused = await fails(
        signin.as_(TILL).StartSmsSignIn(
            pb.StartSmsSignInRequest(phone=new_phone()[0], client_address=new_address())
        )
    )
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "SCOPE_REQUIRED",
    )


# --- engagement unavailable -------------------------------------------------------------------


async def test_without_engagement_no_code_is_sent_and_nothing_is_kept(
    settings: Settings, signin: SignIn
) -> None:
    """A replica whose engagement does not answer: neither a sign-in code nor an erasure code
    can be sent, and nothing is kept of either."""
    from loyalty_identity.app import SPEC

    runner = ServiceRunner(settings)
    cut_off = settings.model_copy(update={"engagement_target": "127.0.0.1:9"})
    service = await runner.start(SPEC, cut_off)
    try:
        typed, e164 = new_phone()
        member_typed, member_e164 = new_phone()
        signed = await signin.sign_in(member_typed, member_e164)  # at the replica that sends
        member, token = signed.member.name, signed.tokens.access_token
        async with grpc.aio.insecure_channel(service.target) as channel:
            stub = As(member_sign_in_pb2_grpc.MemberSignInServiceStub, channel, APP)
            refused = await fails(
                stub.StartSmsSignIn(
                    pb.StartSmsSignInRequest(phone=typed, client_address=new_address())
                )
            )
            own = member_erasure_pb2_grpc.MemberErasureServiceStub(channel)
            mine = (("authorization", f"Bearer {token}"),)
            not_sent = await fails(
                own.RequestErasure(
                    erasure_pb.RequestErasureRequest(member=member, request_id="e1"),
                    metadata=mine,
                )
            )
            nothing = await fails(
                own.GetErasureRequest(
                    erasure_pb.GetErasureRequestRequest(member=member), metadata=mine
                )
            )
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "MESSAGES_UNAVAILABLE",
        )
        assert (not_sent.code, not_sent.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "MESSAGES_UNAVAILABLE",
        )
        assert (nothing.code, nothing.reason) == (
            grpc.StatusCode.NOT_FOUND,
            "ERASURE_REQUEST_NOT_FOUND",
        )
    finally:
        await runner.stop_all()
    await signin.start(typed)  # at once: the refused start is not counted
    assert len(await signin.codes(e164)) == 1


# --- WeChat -----------------------------------------------------------------------------------


async def test_wechat_sign_in_registers_once_and_finds_a_member_by_unionid(
    signin: SignIn,
) -> None:
    openid = f"o{uuid.uuid4().hex}"
    first = await signin.as_().SignInWithWeChat(
        pb.SignInWithWeChatRequest(code=f"dev-{openid}", unit="mall")
    )
    assert first.registered and first.tokens.access_token
    again = await signin.as_().SignInWithWeChat(
        pb.SignInWithWeChatRequest(code=f"dev-{openid}", unit="mall")
    )
    assert not again.registered and again.member.name == first.member.name
    # A member registered at a till with the unionid is the same person: found, openid linked.
    other = f"o{uuid.uuid4().hex}"
    registered = await signin.members(TILL).RegisterMember(
        identity_pb.RegisterMemberRequest(
            identities=[member_pb2.Identity(type="wechat_unionid", value=f"dev-union-{other}")],
            unit="mall",
            request_id=uuid.uuid4().hex,
        )
    )
    found = await signin.as_().SignInWithWeChat(
        pb.SignInWithWeChatRequest(code=f"dev-{other}", unit="mall")
    )
    assert not found.registered and found.member.name == registered.member.name
    resolved = await signin.members(TILL).ResolveMember(
        identity_pb.ResolveMemberRequest(
            identity=member_pb2.Identity(type="wechat_openid", value=other)
        )
    )
    assert resolved.member.name == registered.member.name
    refused = await fails(
        signin.as_().SignInWithWeChat(pb.SignInWithWeChatRequest(code="bogus", unit="mall"))
    )
    assert refused.reason == "WECHAT_CODE_REFUSED"


async def test_signing_out_everywhere_retires_the_member_code_shown_before(
    signin: SignIn,
) -> None:
    """A phone signed out (lost, or someone photographed its code): the code it showed no
    longer resolves at a till, and the member's next code does."""
    mine = await signin.sign_in(*new_phone())
    own = member_caller(mine.tokens.access_token)
    codes = member_code_pb2_grpc.MemberCodeServiceStub(signin.channel)
    request = member_code_pb2.GetMemberCodeRequest(member=mine.member.name)
    shown = (await codes.GetMemberCode(request, metadata=own, timeout=15)).member_code.code
    await member_sign_in_pb2_grpc.MemberSignInServiceStub(signin.channel).SignOutEverywhere(
        pb.SignOutEverywhereRequest(member=mine.member.name), metadata=own, timeout=15
    )

    def scanned(code: str) -> identity_pb.ResolveMemberRequest:
        return identity_pb.ResolveMemberRequest(
            identity=member_pb2.Identity(type="member_code", value=code)
        )

    old = await fails(signin.members(TILL).ResolveMember(scanned(shown)))
    assert (old.code, old.reason) == (grpc.StatusCode.NOT_FOUND, "MEMBER_CODE_UNKNOWN")
    fresh = (
        await As(member_code_pb2_grpc.MemberCodeServiceStub, signin.channel, ADMIN).GetMemberCode(
            request
        )
    ).member_code.code
    assert fresh != shown
    resolved = await signin.members(TILL).ResolveMember(scanned(fresh))
    assert resolved.member.name == mine.member.name
