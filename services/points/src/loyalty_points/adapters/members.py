"""The member directory: the identity service, asked over gRPC (a kit peer) when the points
service meets a member for the first time (later it learns changes from identity's events)."""

from __future__ import annotations

import grpc
from loyalty.identity.v1 import identity_service_pb2, member_pb2
from loyalty.identity.v1.identity_service_pb2_grpc import IdentityServiceStub
from loyalty_kit.caller import Caller
from loyalty_kit.kernel.members import MemberState, member_name
from loyalty_kit.kernel.units import GROUP
from loyalty_kit.peers import peer
from loyalty_kit.settings import Settings

_STATES = {
    member_pb2.MEMBER_STATE_ACTIVE: MemberState.ACTIVE,
    member_pb2.MEMBER_STATE_SUSPENDED: MemberState.SUSPENDED,
    member_pb2.MEMBER_STATE_MERGED: MemberState.MERGED,
    member_pb2.MEMBER_STATE_ERASED: MemberState.ERASED,
}
# The points service reads no personal data: it calls without that scope.
POINTS_CALLER = Caller(unit=GROUP, client_id="points-service")


class IdentityDirectory:
    def __init__(self, settings: Settings) -> None:
        self._identity = peer(settings, "points", "identity", IdentityServiceStub)

    async def state_of(self, member_id: str) -> tuple[MemberState, str] | None:
        try:
            response = await self._identity.stub.GetMember(
                identity_service_pb2.GetMemberRequest(name=member_name(member_id)),
                metadata=self._identity.metadata(POINTS_CALLER),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        member = response.member
        return _STATES.get(member.state, MemberState.ACTIVE), member.merged_into

    async def close(self) -> None:
        await self._identity.close()
