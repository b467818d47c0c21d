"""The MemberCodeService over gRPC: request -> use case -> response.

A rotation runs once per request_id; what is kept for a retry is only the member's name, never
a code: the code is made fresh for every answer (a retry gets the code of now, under the secret
the rotation made)."""

from __future__ import annotations

from datetime import datetime

import grpc
from loyalty.identity.v1 import member_code_pb2 as pb
from loyalty.identity.v1.member_code_pb2_grpc import MemberCodeServiceServicer
from loyalty_kit.resources import member_id_of, member_name
from loyalty_kit.servicers import UnitOfWorkServicer
from loyalty_kit.timestamps import timestamp

from loyalty_identity.bootstrap import Identity
from loyalty_identity.domain.member_code import IssuedCode
from loyalty_identity.service_layer import member_codes
from loyalty_identity.service_layer.uow import IdentityUnitOfWork

SERVICE = "loyalty.identity.v1.MemberCodeService"


def code_message(member_id: str, issued: IssuedCode) -> pb.MemberCode:
    return pb.MemberCode(
        member=member_name(member_id),
        code=issued.code,
        qr_payload=issued.code,
        valid_from=timestamp(issued.valid_from),
        valid_until=timestamp(issued.valid_until),
        refresh_after=timestamp(issued.refresh_after),
    )


class MemberCodeServicer(UnitOfWorkServicer[IdentityUnitOfWork], MemberCodeServiceServicer):
    service = SERVICE

    def __init__(self, app: Identity) -> None:
        super().__init__(app.uow, app.clock)

    async def _code(self, member_id: str) -> pb.MemberCode:
        """The member's code for now (committed: its secret may be made by this call)."""
        now = self.clock()
        async with self.uow() as uow:
            issued = await member_codes.member_code(uow, member_id, now)
            await uow.commit()
        return code_message(member_id, issued)

    async def GetMemberCode(
        self, request: pb.GetMemberCodeRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMemberCodeResponse:
        member_id = member_id_of(request.member, "member")
        return pb.GetMemberCodeResponse(member_code=await self._code(member_id))

    async def RotateMemberCode(
        self, request: pb.RotateMemberCodeRequest, context: grpc.aio.ServicerContext
    ) -> pb.RotateMemberCodeResponse:
        member_id = member_id_of(request.member, "member")

        async def work(uow: IdentityUnitOfWork, now: datetime) -> pb.RotateMemberCodeResponse:
            await member_codes.rotate_member_code(uow, member_id, request.reason, now)
            return pb.RotateMemberCodeResponse(member_code=pb.MemberCode(member=request.member))

        await self._mutate("RotateMemberCode", request, pb.RotateMemberCodeResponse, work)
        return pb.RotateMemberCodeResponse(member_code=await self._code(member_id))
