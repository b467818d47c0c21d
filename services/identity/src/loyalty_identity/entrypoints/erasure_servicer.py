"""The MemberErasureService over gRPC: request -> erasure use case -> response. Nothing else.

Opening and cancelling a request run once per request_id (what is kept for a retry is the
request's answer: names, states and times, no personal data, never the code); a confirmation
is idempotent by itself and counts a retried wrong code once (`service_layer/erasure.py`)."""

from __future__ import annotations

from datetime import datetime

import grpc
from loyalty.identity.v1 import member_erasure_pb2 as pb
from loyalty.identity.v1.member_erasure_pb2_grpc import MemberErasureServiceServicer
from loyalty_kit.caller import current_caller
from loyalty_kit.resources import member_id_of, member_name
from loyalty_kit.servicers import UnitOfWorkServicer
from loyalty_kit.timestamps import timestamp

from loyalty_identity.bootstrap import Identity
from loyalty_identity.domain.erasure import BY_MEMBER, BY_OPERATOR, ErasureRequest, ErasureState
from loyalty_identity.service_layer import erasure
from loyalty_identity.service_layer.erasure import ErasurePorts, Sweeper
from loyalty_identity.service_layer.uow import IdentityUnitOfWork

SERVICE = "loyalty.identity.v1.MemberErasureService"
STATES = {
    ErasureState.REQUESTED: pb.ERASURE_STATE_REQUESTED,
    ErasureState.CONFIRMED: pb.ERASURE_STATE_CONFIRMED,
    ErasureState.CANCELLED: pb.ERASURE_STATE_CANCELLED,
    ErasureState.DONE: pb.ERASURE_STATE_DONE,
}


def erasure_message(request: ErasureRequest) -> pb.ErasureRequest:
    member = member_name(request.member_id)
    message = pb.ErasureRequest(
        name=f"{member}/erasureRequest",
        member=member,
        state=STATES[request.state],
        request_time=timestamp(request.requested_at),
        erase_after=timestamp(request.erase_after),
        code_expire_time=timestamp(request.code_expires_at),
        cancel_reason=request.cancel_reason,
        attempts_left=request.attempts_left,
    )
    for field, at in (
        ("confirm_time", request.confirmed_at),
        ("cancel_time", request.cancelled_at),
        ("done_time", request.done_at),
    ):
        if at is not None:
            getattr(message, field).CopyFrom(timestamp(at))
    return message


class MemberErasureServicer(UnitOfWorkServicer[IdentityUnitOfWork], MemberErasureServiceServicer):
    service = SERVICE

    def __init__(self, app: Identity) -> None:
        super().__init__(app.uow, app.clock)
        assert app.erasure is not None
        self.ports: ErasurePorts = app.erasure

    async def RequestErasure(
        self, request: pb.RequestErasureRequest, context: grpc.aio.ServicerContext
    ) -> pb.RequestErasureResponse:
        member_id = member_id_of(request.member, "member")

        async def work(uow: IdentityUnitOfWork, now: datetime) -> pb.RequestErasureResponse:
            opened = await erasure.request_erasure(uow, self.ports, member_id, now)
            return pb.RequestErasureResponse(erasure_request=erasure_message(opened))

        return await self._mutate("RequestErasure", request, pb.RequestErasureResponse, work)

    async def ConfirmErasure(
        self, request: pb.ConfirmErasureRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConfirmErasureResponse:
        member_id = member_id_of(request.member, "member")
        confirmed = await erasure.confirm_erasure(
            self.uow, self.ports, member_id, request.code, request.request_id, self.clock()
        )
        return pb.ConfirmErasureResponse(erasure_request=erasure_message(confirmed))

    async def CancelErasure(
        self, request: pb.CancelErasureRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelErasureResponse:
        member_id = member_id_of(request.member, "member")
        by = BY_MEMBER if current_caller().member else BY_OPERATOR

        async def work(uow: IdentityUnitOfWork, now: datetime) -> pb.CancelErasureResponse:
            cancelled = await erasure.cancel_erasure(uow, member_id, by, now)
            return pb.CancelErasureResponse(erasure_request=erasure_message(cancelled))

        return await self._mutate("CancelErasure", request, pb.CancelErasureResponse, work)

    async def GetErasureRequest(
        self, request: pb.GetErasureRequestRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetErasureRequestResponse:
        member_id = member_id_of(request.member, "member")
        found = await self._read(lambda uow: erasure.get_erasure_request(uow, member_id))
        return pb.GetErasureRequestResponse(erasure_request=erasure_message(found))

    async def RunDueErasures(
        self, request: pb.RunDueErasuresRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunDueErasuresResponse:
        caller = current_caller()
        erased = await erasure.run_due_erasures(
            self.uow, self.clock(), request.limit, Sweeper(caller.unit, caller.client_id)
        )
        return pb.RunDueErasuresResponse(erased_members=[member_name(m) for m in erased])
