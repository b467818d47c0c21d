"""The member directory: the identity service, asked over gRPC when the points service meets a
member for the first time (later it learns changes from identity's events)."""

from __future__ import annotations

import grpc
from loyalty.identity.v1 import identity_service_pb2, identity_service_pb2_grpc, member_pb2
from loyalty_kit.auth import ServiceCredentials
from loyalty_kit.caller import Caller
from loyalty_kit.channels import channel_to
from loyalty_kit.settings import Settings

_STATES = {
    member_pb2.MEMBER_STATE_ACTIVE: "active",
    member_pb2.MEMBER_STATE_SUSPENDED: "suspended",
    member_pb2.MEMBER_STATE_MERGED: "merged",
    member_pb2.MEMBER_STATE_ERASED: "erased",
}
# The points service reads no personal data: it calls without that scope.
POINTS_CALLER = Caller(unit="group", client_id="points-service")


class IdentityDirectory:
    def __init__(self, settings: Settings) -> None:
        self._channel = channel_to(settings, "identity")
        self._stub = identity_service_pb2_grpc.IdentityServiceStub(self._channel)
        self._metadata = ServiceCredentials.from_settings("points", settings.data_dir).metadata

    async def state_of(self, member_id: str) -> tuple[str, str] | None:
        try:
            response = await self._stub.GetMember(
                identity_service_pb2.GetMemberRequest(name=f"members/{member_id}"),
                metadata=self._metadata(POINTS_CALLER),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        member = response.member
        return _STATES.get(member.state, "active"), member.merged_into

    async def close(self) -> None:
        await self._channel.close()
