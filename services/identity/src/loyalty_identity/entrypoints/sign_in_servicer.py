"""The MemberSignInService over gRPC: request -> sign-in use case -> response; refusals counted
in the service's metrics (`service_layer/refusals.py`)."""

from __future__ import annotations

from typing import Any

import grpc
from loyalty.common.v1 import channel_pb2
from loyalty.identity.v1 import member_sign_in_pb2 as pb
from loyalty.identity.v1.member_sign_in_pb2_grpc import MemberSignInServiceServicer
from loyalty_kit.caller import current_caller
from loyalty_kit.servicers import UnitOfWorkServicer
from loyalty_kit.timestamps import timestamp

from loyalty_identity.bootstrap import Identity
from loyalty_identity.domain.member import Member
from loyalty_identity.domain.sign_in import CHALLENGES, SESSIONS
from loyalty_identity.entrypoints import convert
from loyalty_identity.service_layer import sign_in
from loyalty_identity.service_layer.refusals import SIGN_IN, counting
from loyalty_identity.service_layer.sign_in import SignInPorts, Tokens
from loyalty_identity.service_layer.uow import IdentityUnitOfWork

SERVICE = "loyalty.identity.v1.MemberSignInService"


def _tokens(tokens: Tokens) -> pb.MemberTokens:
    return pb.MemberTokens(
        access_token=tokens.access_token,
        access_token_expire_time=timestamp(tokens.access_expires_at),
        refresh_token=tokens.refresh_token,
        refresh_token_expire_time=timestamp(tokens.refresh_expires_at),
        session=f"{SESSIONS}{tokens.session_id}",
    )


class MemberSignInServicer(UnitOfWorkServicer[IdentityUnitOfWork], MemberSignInServiceServicer):
    service = SERVICE

    def __init__(self, app: Identity) -> None:
        super().__init__(app.uow, app.clock)
        self.types = app.types
        assert app.sign_in is not None
        self.ports: SignInPorts = app.sign_in

    async def _member(self, member: Member) -> Any:
        types = self.types.get()
        if types is None:
            types = await self._read(lambda uow: uow.members.identity_types())
        kinds = {code: t.kind for code, t in types.items()}
        return convert.member_message(
            member,
            personal_data=current_caller().sees_personal_data_of(member.member_id),
            kinds=kinds,
        )

    async def StartSmsSignIn(
        self, request: pb.StartSmsSignInRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartSmsSignInResponse:
        with counting(SIGN_IN):
            started = await sign_in.start_sms(
                self.uow, self.ports, request.phone, request.client_address, self.clock()
            )
        return pb.StartSmsSignInResponse(
            challenge=f"{CHALLENGES}{started.challenge_id}",
            expire_time=timestamp(started.expires_at),
            resend_time=timestamp(started.resend_at),
        )

    async def VerifySmsSignIn(
        self, request: pb.VerifySmsSignInRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifySmsSignInResponse:
        channel = request.channel or channel_pb2.CHANNEL_APP
        with counting(SIGN_IN):
            signed = await sign_in.verify_sms(
                self.uow,
                self.ports,
                request.challenge.strip(),
                request.code.strip(),
                request.unit.strip(),
                convert.channel_name(channel),
                self.clock(),
            )
        return pb.VerifySmsSignInResponse(
            member=await self._member(signed.member),
            registered=signed.registered,
            tokens=_tokens(signed.tokens),
        )

    async def SignInWithWeChat(
        self, request: pb.SignInWithWeChatRequest, context: grpc.aio.ServicerContext
    ) -> pb.SignInWithWeChatResponse:
        with counting(SIGN_IN):
            signed = await sign_in.sign_in_with_wechat(
                self.uow,
                self.ports,
                request.code,
                request.unit.strip(),
                convert.channel_name(channel_pb2.CHANNEL_MINI_PROGRAM),
                self.clock(),
            )
        return pb.SignInWithWeChatResponse(
            member=await self._member(signed.member),
            registered=signed.registered,
            tokens=_tokens(signed.tokens),
        )

    async def RefreshMemberToken(
        self, request: pb.RefreshMemberTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.RefreshMemberTokenResponse:
        with counting(SIGN_IN):
            tokens = await sign_in.refresh(
                self.uow, self.ports, request.refresh_token, self.clock()
            )
        return pb.RefreshMemberTokenResponse(tokens=_tokens(tokens))

    async def SignOut(
        self, request: pb.SignOutRequest, context: grpc.aio.ServicerContext
    ) -> pb.SignOutResponse:
        with counting(SIGN_IN):
            session_id = await sign_in.sign_out(self.uow, request.refresh_token, self.clock())
        return pb.SignOutResponse(session=f"{SESSIONS}{session_id}")

    async def SignOutEverywhere(
        self, request: pb.SignOutEverywhereRequest, context: grpc.aio.ServicerContext
    ) -> pb.SignOutEverywhereResponse:
        member_id = convert.member_id_of(request.member, "member")
        ended = await sign_in.sign_out_everywhere(self.uow, member_id, self.clock())
        return pb.SignOutEverywhereResponse(sessions_ended=ended)
